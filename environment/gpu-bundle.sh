#!/usr/bin/env bash
# Builds here, without a GPU, what the GPU check needs (../shared/gpu.md, README "GPU check"):
# `environment/gpu-bundle.sh [DIR]` (default target/gpu-bundle) writes
#   bins.tar.xz           release, --features cuda, stripped: deepsynth (the CLI), device_suite
#                         (tests/device_suite.rs), generate_vs_hf and train_vs_peft (the benches)
#   python.tar.xz         bitsandbytes 0.50.2 for CUDA 13.0 (its other GPU libraries left out)
#   MANIFEST              sizes, SHA-256s, the commit and the toolchain
# and fails if the folder exceeds $DEEPSYNTH_BUNDLE_LIMIT_MIB (default 32: the device machine
# takes 64 MiB in all, and the working tree that travels with it, fixtures and the tiny model
# included, is about 30 MiB). Run it there from the repository root with
# `bash environment/gpu-check.sh target/gpu-bundle`, carrying target/gpu-bundle.
#
# The binaries link against stubs of the CUDA libraries (environment/cuda-link-stubs.sh), nvcc
# and the CUDA headers come from PyPI (environment/cuda-toolchain.sh), kernels are built for
# CUDA_COMPUTE_CAP (default 90, the H200).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${1:-$repo/target/gpu-bundle}"
limit_mib="${DEEPSYNTH_BUNDLE_LIMIT_MIB:-32}"
target="${CARGO_TARGET_DIR:-$repo/target}"

echo "== CUDA toolchain (nvcc from PyPI)"
eval "$(bash environment/cuda-toolchain.sh --env)"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"

echo "== link stubs"
stubroot="$target/cuda-link-stubs"
# cudarc's build script puts $CUDA_TOOLKIT_ROOT_DIR/lib/stubs on the link path when the folder
# exists, and reruns (rebuilding candle) whenever the variable changes: set it once, first.
mkdir -p "$stubroot/lib/stubs"
export CUDA_TOOLKIT_ROOT_DIR="$stubroot"
# candle-kernels' static libraries call into the CUDA runtime: build the library (no link
# step) first, then the stubs from what it left undefined.
cargo build --release --locked --features cuda --lib
bash environment/cuda-link-stubs.sh "$stubroot" \
    $(find "$target/release/build" -path '*candle-kernels-*/out/*.a' 2>/dev/null)

echo "== release build, --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
cargo build --release --locked --features cuda --bin deepsynth
# The executable cargo reports for target NAME on its JSON messages.
executable() {
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1"
}
suite="$(cargo test --release --locked --features cuda --no-run --test device_suite \
    --message-format=json | executable device_suite)"
generate="$(cargo bench --locked --features cuda --no-run --bench generate_vs_hf \
    --message-format=json | executable generate_vs_hf)"
train="$(cargo bench --locked --features cuda --no-run --bench train_vs_peft \
    --message-format=json | executable train_vs_peft)"
for x in "$suite" "$generate" "$train"; do
    [[ -x "$x" ]] || { echo "gpu-bundle: a test or bench binary is missing" >&2; exit 1; }
done

echo "== bundle"
rm -rf "$out"
mkdir -p "$out"
bins="$(mktemp -d)"
for pair in "$target/release/deepsynth:deepsynth" "$suite:device_suite" \
    "$generate:generate_vs_hf" "$train:train_vs_peft"; do
    src="${pair%%:*}"
    name="${pair##*:}"
    strip -o "$bins/$name" "$src"
done
# One solid archive with a dictionary larger than any binary: the four share candle, its PTX and
# the embedded model, which xz then stores once (measured: 47 MiB as four .xz, 22 MiB as one).
tar -C "$bins" -cf - . | xz -T1 -9e --lzma2=dict=192MiB >"$out/bins.tar.xz"
rm -rf "$bins"

echo "== bitsandbytes (CUDA 13.0 library only)"
wheels="$target/gpu-bundle-wheels"
mkdir -p "$wheels"
whl="$wheels/bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
if [[ ! -f "$whl" ]]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        --platform manylinux_2_24_x86_64 --python-version 3.12 bitsandbytes==0.50.2 -d "$wheels"
fi
py="$(mktemp -d)"
trap 'rm -rf "$py"' EXIT
python3 - "$whl" "$py" <<'EOF'
import re, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
keep_lib = re.compile(r"libbitsandbytes_(cpu|cuda130)\.so$")
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(".so") and not keep_lib.search(name):
            continue
        z.extract(name, dest)
EOF
tar -C "$py" -cJf "$out/python.tar.xz" .

{
    echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(rustc --version), nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p'), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
    (cd "$out" && find . -type f ! -name MANIFEST -printf '%P\n' | sort | while read -r f; do
        echo "$(sha256sum "$f" | cut -d' ' -f1) $(stat -c %s "$f") $f"
    done)
} >"$out/MANIFEST"
cat "$out/MANIFEST"
size=$(du -sb "$out" | cut -f1)
echo "gpu-bundle: $out is $((size / 1024 / 1024)) MiB ($size bytes; limit $limit_mib MiB)"
if ((size > limit_mib * 1024 * 1024)); then
    echo "gpu-bundle: over the limit" >&2
    exit 1
fi
