#!/usr/bin/env bash
# The GPU check, run on the GPU machine from the repository root (the working tree travels there
# with the bundle of environment/gpu-bundle.sh):
#
#   bash environment/gpu-check.sh target/gpu-bundle
#
# Writes one Markdown report, $OUT/gpu-check.md (else ./gpu-check.md), and the logs beside it.
# Every step runs under its own time limit and the report records each one's outcome, so one
# failing step still leaves the others' results: the whole check stays under 8 minutes.
#
# Steps: the machine and the CUDA libraries found; the device suite on CUDA (fixture parity in
# f32 and bf16, NF4 dequantisation bit for bit, LoRA and QLoRA gradients against the CPU's,
# training steps, a checkpoint resumed on the CPU); generation tokens/s of ours and of
# transformers `generate` on the tiny Llama fixture and ours on the tiny DeepSeek-OCR (greedy and
# beam 4, f32 and bf16); the quickstart on CUDA and on the CPU with their held-out loss curves
# side by side; bitsandbytes on the GPU.
#
# DEEPSYNTH_CHECK_DEVICE=cpu dry-runs it on a machine without a GPU (the link stubs on the
# loader path answer "no device"): the same steps, every device being the CPU.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="$(cd "${1:-$repo/target/gpu-bundle}" && pwd)"
device="${DEEPSYNTH_CHECK_DEVICE:-cuda}"
outdir="${OUT:-$PWD}"
mkdir -p "$outdir"
report="$outdir/gpu-check.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start_all=$(date +%s)
cd "$repo"

say() { printf '%s\n' "$*" >>"$report"; }
# step NAME LIMIT_S LOG COMMAND...: runs COMMAND under a limit, logs its output, reports it.
step() {
    local name="$1" limit="$2" log="$3"
    shift 3
    local t0 t1 rc
    echo "== $name" >&2
    t0=$(date +%s.%N)
    timeout "$limit" "$@" >"$outdir/$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    local verdict="passed"
    ((rc == 124)) && verdict="TIMED OUT after ${limit} s"
    ((rc != 0 && rc != 124)) && verdict="FAILED (exit $rc)"
    say "### $name: $verdict in $secs s"
    say ""
    say '```'
    tail -n 40 "$outdir/$log" >>"$report"
    say '```'
    say ""
    return $rc
}

: >"$report"
say "# DeepSynth GPU check"
say ""
say "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); device under test: \`$device\`"
say "- bundle: $(head -2 "$bundle/MANIFEST" | tr '\n' ';')"
say "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
if command -v nvidia-smi >/dev/null; then
    say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
fi
say ""

echo "== unpack" >&2
mkdir -p "$work/bin" "$work/python" "$work/lib"
xz -dc "$bundle/bins.tar.xz" | tar -C "$work/bin" -xf -
chmod +x "$work"/bin/*
tar -C "$work/python" -xJf "$bundle/python.tar.xz"

# The binaries need libcuda.so, libnvrtc.so, libcurand.so, libcublas.so, libcublasLt.so and
# libcudart.so (the link stubs' names): the driver's and the NVIDIA wheels' libraries under
# those names, or, for a dry run, the stubs themselves.
if [[ "$device" == cpu ]]; then
    stubs="$(find "$repo/target" -path '*cuda-link-stubs/lib/stubs' -type d 2>/dev/null | head -1)"
    export LD_LIBRARY_PATH="$stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "- CUDA libraries: the link stubs (dry run)"
else
    nv="$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null)"
    libdirs=""
    for name in nvrtc curand cublas cublasLt cudart; do
        f="$(find "$nv" -name "lib$name.so.*" ! -name '*.alt.*' 2>/dev/null | sort | head -1)"
        if [[ -n "$f" ]]; then
            ln -sf "$f" "$work/lib/lib$name.so"
            libdirs="$libdirs:$(dirname "$f")"
        fi
        say "- lib$name.so: ${f:-NOT FOUND}"
    done
    cuda="$(ldconfig -p | awk '/libcuda\.so\.1 / {print $NF; exit}')"
    [[ -n "$cuda" ]] && ln -sf "$cuda" "$work/lib/libcuda.so"
    say "- libcuda.so: ${cuda:-NOT FOUND}"
    export LD_LIBRARY_PATH="$work/lib$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
say ""
say "## Steps"
say ""

export DEEPSYNTH_REPO="$repo" DEEPSYNTH_TEST_DEVICE="$device" RUST_BACKTRACE=1
step "device suite on $device (tests/device_suite.rs)" 90 device_suite.log \
    "$work/bin/device_suite" --test-threads 1 --nocapture

for dtype in f32 bf16; do
    step "generation on $device, $dtype: ours vs transformers generate (benches/generate_vs_hf.rs)" \
        60 "generate_$dtype.log" env DEEPSYNTH_BENCH_DEVICE="$device" DEEPSYNTH_BENCH_DTYPE="$dtype" \
        DEEPSYNTH_BENCH_SKIP_FULL=1 "$work/bin/generate_vs_hf"
done

step "training steps on $device, bf16: tiny config, then full size (2 x 1024 px page + 128 tokens, gradient checkpointing), ours vs PyTorch + PEFT + bitsandbytes (benches/train_vs_peft.rs)" \
    150 train.log env DEEPSYNTH_BENCH_DEVICE="$device" DEEPSYNTH_BENCH_DTYPE=bf16 \
    DEEPSYNTH_BENCH_FULL_BATCH=2 DEEPSYNTH_BENCH_FULL_IMAGE=1024 DEEPSYNTH_BENCH_FULL_TEXT=128 \
    DEEPSYNTH_BENCH_STEPS=3 DEEPSYNTH_BENCH_WARMUP=1 CARGO_TARGET_DIR="$work/target" \
    DEEPSYNTH_PYTHON=python3 PYTHONPATH="$work/python" \
    "$work/bin/train_vs_peft"

cd "$work"
qs_args=(quickstart --max-train-samples 96 --epochs 1 --eval-steps 4 --max-eval-samples 8)
step "quickstart on $device" 60 quickstart_device.log \
    "$work/bin/deepsynth" "${qs_args[@]}" --device "$device" --output-dir "$work/qs-device"
step "quickstart on the CPU" 60 quickstart_cpu.log \
    "$work/bin/deepsynth" "${qs_args[@]}" --device cpu --output-dir "$work/qs-cpu"
say "### held-out loss, $device vs CPU (tolerance 1e-3 nats per token)"
say ""
python3 - "$work/qs-device/metrics.jsonl" "$work/qs-cpu/metrics.jsonl" >>"$report" 2>&1 <<'EOF'
import json, sys
def curve(path):
    out = {}
    try:
        for line in open(path):
            r = json.loads(line)
            if r.get("tag") == "eval/loss":
                out[r["step"]] = r["value"]
    except OSError as e:
        print(f"cannot read {path}: {e}")
    return out
dev, cpu = curve(sys.argv[1]), curve(sys.argv[2])
print("| step | device | CPU | difference |\n|---|---|---|---|")
worst = 0.0
for s in sorted(set(dev) | set(cpu)):
    d, c = dev.get(s), cpu.get(s)
    diff = abs(d - c) if d is not None and c is not None else float("nan")
    worst = max(worst, diff) if diff == diff else float("inf")
    print(f"| {s} | {d} | {c} | {diff:.2e} |")
print(f"\nlargest difference {worst:.2e}: {'within' if worst <= 1e-3 else 'OUTSIDE'} the tolerance\n")
EOF

step "bitsandbytes 0.50.2 on $device" 30 bitsandbytes.log env PYTHONPATH="$work/python" \
    python3 -c '
import bitsandbytes as bnb, bitsandbytes.functional as F, torch
dev = "cuda" if torch.cuda.is_available() else "cpu"
w = torch.randn(256, 512, dtype=torch.bfloat16, device=dev)
q, s = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
d = F.dequantize_4bit(q, s)
print("bitsandbytes", bnb.__version__, "torch", torch.__version__, "device", dev)
print("NF4 round trip max error", (d.float() - w.float()).abs().max().item())
'

say "## Not in this check"
say ""
say "- full-size generation (transformers' side needs the official DeepSeek-OCR code);"
say "  the official code as the training peer (the GPU peer is benches/torch_ocr.py)."
say ""
say "Total: $(( $(date +%s) - start_all )) s"
echo "gpu-check: report in $report" >&2
