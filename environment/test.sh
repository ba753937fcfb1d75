#!/usr/bin/env bash
# All of DeepSynth's tests, from a fresh machine: toolchain checks, lint, unit + integration
# tests, then every notebook through the real Jupyter kernel.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== setup (evcxr_jupyter, Python venv, kernelspec)"
bash environment/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings

echo "== MLflow for tests/mlflow.rs (venv .venv-mlflow; skipped when installed)"
DEEPSYNTH_MLFLOW="$(bash environment/setup-mlflow.sh)"
export DEEPSYNTH_MLFLOW

echo "== W&B SDK for tests/wandb.rs (venv .venv-wandb; skipped when installed)"
DEEPSYNTH_WANDB="$(bash environment/setup-wandb.sh)"
export DEEPSYNTH_WANDB

echo "== huggingface_hub for tests/hub_push.rs (venv .venv-hub; skipped when installed)"
DEEPSYNTH_HUB_PYTHON="$(bash environment/setup-hub.sh)"
export DEEPSYNTH_HUB_PYTHON

echo "== cargo test"
cargo test --locked

echo "== without default features (the quickstart's build: no polars)"
cargo clippy --locked --no-default-features --all-targets -- -D warnings
cargo test --locked --no-default-features --lib --test cli

echo "== notebooks"
DEEPSYNTH_SKIP_SETUP=1 bash environment/run-notebooks.sh
