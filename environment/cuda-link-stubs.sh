#!/usr/bin/env bash
# Link stubs for a `--features cuda` binary built on a machine without the NVIDIA driver:
# `environment/cuda-link-stubs.sh ROOT [STATIC_LIB ...]` writes ROOT/lib/stubs/lib{cuda,nvrtc,
# curand,cublas,cublasLt,cudart}.so, each defining every function cudarc's bindings can call in
# that library (read from cudarc's sources in the Cargo registry), plus the CUDA runtime symbols
# the given static libraries (candle-kernels' nvcc-built ones) leave undefined.
#
# Why: candle 0.11.1 turns on cudarc's `dynamic-linking`, so a CUDA binary links -lcuda -lnvrtc
# -lcurand -lcublas -lcublasLt -lcudart, and no PyPI wheel ships libcuda (it comes with the
# driver). With CUDA_TOOLKIT_ROOT_DIR=ROOT, cudarc's build script adds ROOT/lib/stubs to the link
# search path. Each stub's soname is the plain `libX.so`, so on the GPU machine
# environment/gpu-check.sh points those names at the driver's libcuda.so.1 and at the NVIDIA
# wheels' libraries, whatever their version suffixes. Every stub function returns 100
# (CUDA_ERROR_NO_DEVICE): with the stubs themselves on the loader path a binary starts on a
# machine without a GPU and falls back to the CPU, which is how the bundle is dry-run here.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${1:?usage: cuda-link-stubs.sh ROOT [STATIC_LIB ...]}"
shift
out="$root/lib/stubs"
mkdir -p "$out"

version="$(awk '/^name = "cudarc"$/ {getline; gsub(/"/, "", $3); print $3; exit}' "$repo/Cargo.lock")"
find_src() {
    find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "cudarc-$version" \
        2>/dev/null | head -1
}
src="$(find_src)"
if [[ -z "$src" ]]; then
    # Unpacks every locked crate, cudarc (needed only by `cuda`) among them.
    (cd "$repo" && cargo fetch --locked >&2)
    src="$(find_src)"
fi
[[ -n "$src" ]] || { echo "cuda-link-stubs: cudarc $version not in the Cargo registry" >&2; exit 1; }
src="$src/src"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
symbols() {
    grep -ohE 'load::<_F>\("[A-Za-z_0-9]+"\)' "$@" | sed -E 's/.*\("([^"]+)"\)/\1/'
}
# The CUDA runtime's registration entry points that nvcc-compiled objects call.
{
    symbols "$src/runtime/sys/mod.rs"
    printf '%s\n' __cudaRegisterFatBinary __cudaRegisterFatBinaryEnd __cudaUnregisterFatBinary \
        __cudaRegisterFunction __cudaRegisterVar __cudaRegisterManagedVar \
        __cudaPushCallConfiguration __cudaPopCallConfiguration __cudaInitModule \
        __cudaRegisterTexture __cudaRegisterSurface
    for a in "$@"; do
        nm -u "$a" 2>/dev/null | awk '{print $NF}' | grep -E '^_*cuda' || true
    done
} | sort -u >"$work/cudart.txt"
symbols "$src/driver/sys/mod.rs" | sort -u >"$work/cuda.txt"
symbols "$src/nvrtc/sys/mod.rs" | sort -u >"$work/nvrtc.txt"
symbols "$src/curand/sys/mod.rs" | sort -u >"$work/curand.txt"
symbols "$src/cublas/sys/mod.rs" | sort -u >"$work/cublas.txt"
symbols "$src/cublaslt/sys/mod.rs" | sort -u >"$work/cublasLt.txt"

for lib in cuda nvrtc curand cublas cublasLt cudart; do
    sed 's/.*/int &(void) { return 100; }/' "$work/$lib.txt" >"$work/$lib.c"
    gcc -shared -fPIC -fno-builtin -o "$out/lib$lib.so" -Wl,-soname,"lib$lib.so" "$work/$lib.c"
    echo "cuda-link-stubs: lib$lib.so with $(wc -l <"$work/$lib.txt") functions" >&2
done
