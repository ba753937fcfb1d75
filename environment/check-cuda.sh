#!/usr/bin/env bash
# Checks the CUDA build (`--features cuda`) without a GPU: installs nvcc from PyPI
# (environment/cuda-toolchain.sh), then clippy with -D warnings, with and without default features.
# .ci/run runs it after environment/test.sh, in the same target directory, so only the crates
# that `cuda` changes (cudarc, candle-kernels, candle-core, candle-nn, deepsynth) are checked again.
#
# Most of its time goes to candle-kernels' build script, which compiles candle's CUDA kernels with
# nvcc for CUDA_COMPUTE_CAP (90: the H200 DeepSynth is checked on): its PTX files (about 80 s of
# one core) and the quantised-matmul and MoE kernels into libmoe.a (about 16 minutes of one core).
# It runs CUDAFORGE_THREADS nvcc at a time (default here: one per core; cudaforge's own default is
# half the cores) and keeps each result in the target directory, so a second run takes seconds.
#
# It checks, it does not link: with candle 0.11.1 a linked `--features cuda` binary needs the
# NVIDIA driver's libcuda.so at link time (README, "CUDA").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== CUDA toolchain (nvcc from PyPI)"
eval "$(bash environment/cuda-toolchain.sh --env)"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"

echo "== cargo clippy --features cuda -D warnings (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
cargo clippy --locked --features cuda --all-targets -- -D warnings

echo "== cargo clippy --no-default-features --features cuda -D warnings"
cargo clippy --locked --no-default-features --features cuda --all-targets -- -D warnings
