#!/usr/bin/env bash
# Runs every notebook (or the ones given) headlessly through the deepsynth kernel and checks it,
# committed outputs included; --write puts the fresh outputs into the notebooks instead:
#   bash environment/run-notebooks.sh [--write] [--out DIR] [notebooks/NN-name.ipynb ...]
# Runs environment/setup.sh first unless DEEPSYNTH_SKIP_SETUP=1. See run_notebooks.py for checks.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
if [[ "${DEEPSYNTH_SKIP_SETUP:-0}" != "1" ]]; then
    bash environment/setup.sh
else
    # The kernelspec is per user and points at one checkout: always point it at this one.
    bash environment/install-kernel.sh
fi
exec "$repo/.venv/bin/python" environment/run_notebooks.py "$@"
