#!/usr/bin/env bash
# Installs the CUDA compiler that `cargo ... --features cuda` needs, from PyPI, without a GPU or a
# system CUDA toolkit, and prints the environment cargo needs to find it.
#
#   eval "$(bash environment/cuda-toolchain.sh --env)"    # install if needed, then export
#   cargo clippy --locked --features cuda --all-targets -- -D warnings
#
# Without --env it installs and prints the same lines for a person to read (on stdout too).
# Progress messages always go to stderr, so `--env`'s stdout holds only `export` lines.
#
# What it installs: environment/requirements-cuda.txt (nvcc, the CUDA runtime and its headers,
# CCCL, cicc/libdevice; all CUDA 13.0.x) into a venv, skipping the install when the stamp says the
# same requirements are already there. The pip wheels lay out a CUDA root at
# <site-packages>/nvidia/cu13 with bin/nvcc, include/ (cuda_runtime.h, cuda.h, crt/, cccl/),
# lib/libcudart.so.13 and nvvm/; nvcc finds its own include directories and cicc from there
# (bin/nvcc.profile), so no -I flags are needed.
#
# What it exports, and who reads it:
#   PATH              nvcc first: cudarc's build script runs `nvcc --version` to pick its CUDA
#                     bindings (13.0), and cudaforge (candle-kernels' build script) looks for nvcc
#                     on PATH after $NVCC;
#   NVCC              the same nvcc, which cudaforge tries first;
#   CUDA_HOME, CUDA_PATH, CUDA_ROOT
#                     the CUDA root: cudarc's build script takes its link search paths
#                     (<root>/lib, <root>/lib/stubs, ...) from these instead of /usr/local/cuda;
#   CUDA_COMPUTE_CAP  90 unless already set: cudaforge compiles candle's kernels for this
#                     architecture instead of asking nvidia-smi (there is no GPU here); 90 is the
#                     H200 that DeepSynth is checked on.
#
# Environment:
#   DEEPSYNTH_CUDA_VENV  the venv to install into (default: .venv-cuda in the repository; CI keeps
#                        it in ~/.cache);
#   PYTHON               the interpreter the venv is made from (default python3).
#
# This is enough for `cargo check`/`cargo clippy` and for compiling the library. Linking a binary
# or a test with `--features cuda` is a different matter: candle 0.11.1 turns on cudarc's
# `dynamic-linking`, so the linker wants libcuda.so (the NVIDIA driver's library; on no PyPI
# package), libcublas.so, libcublasLt.so, libcurand.so, libnvrtc.so and libcudart.so (README,
# "CUDA").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

mode=show
case "${1:-}" in
    --env) mode=env ;;
    "") ;;
    -h | --help)
        sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "cuda-toolchain: unknown argument '$1' (usage: cuda-toolchain.sh [--env])" >&2
        exit 2
        ;;
esac

venv="${DEEPSYNTH_CUDA_VENV:-$repo/.venv-cuda}"
python="${PYTHON:-python3}"
requirements="$repo/environment/requirements-cuda.txt"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "cuda-toolchain: creating $venv" >&2
    "$python" -m venv "$venv" >&2
fi
# The stamp records what was installed: the requirements file and the venv's Python version.
stamp="$venv/.deepsynth-requirements-cuda.sha256"
want="$({ cat "$requirements"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "cuda-toolchain: CUDA toolchain already installed in $venv" >&2
else
    echo "cuda-toolchain: pip install -r environment/requirements-cuda.txt into $venv (about 105 MB)" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements" >&2
    echo "$want" >"$stamp"
fi

# nvidia/ is a namespace package shared by all NVIDIA wheels; CUDA 13's wheels put their files in
# nvidia/cu13.
root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
if [[ ! -x "$root/bin/nvcc" ]]; then
    echo "cuda-toolchain: no nvcc at $root/bin/nvcc after installing $requirements" >&2
    exit 1
fi
release="$("$root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
echo "cuda-toolchain: nvcc $release at $root/bin/nvcc" >&2

q() { printf '%q' "$1"; }
exports="export PATH=$(q "$root/bin"):\"\$PATH\"
export NVCC=$(q "$root/bin/nvcc")
export CUDA_HOME=$(q "$root")
export CUDA_PATH=$(q "$root")
export CUDA_ROOT=$(q "$root")
export CUDA_COMPUTE_CAP=$(q "${CUDA_COMPUTE_CAP:-90}")"

if [[ "$mode" == env ]]; then
    printf '%s\n' "$exports"
else
    echo "cuda-toolchain: ready. To use it in this shell:"
    echo "    eval \"\$(bash environment/cuda-toolchain.sh --env)\""
    echo "which runs:"
    printf '%s\n' "$exports" | sed 's/^/    /'
fi
