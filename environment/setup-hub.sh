#!/usr/bin/env bash
# Installs huggingface_hub for tests/hub_push.rs into .venv-hub (DEEPSYNTH_HUB_VENV) from
# environment/requirements-hub.txt and prints the path of its Python (for DEEPSYNTH_HUB_PYTHON).
# See setup-venv.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh" hub python
