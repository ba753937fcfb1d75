#!/usr/bin/env bash
# Installs Weights & Biases' SDK for tests/wandb.rs into .venv-wandb (DEEPSYNTH_WANDB_VENV) from
# environment/requirements-wandb.txt and prints the path of its Python (for DEEPSYNTH_WANDB).
# See setup-venv.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh" wandb python
