#!/usr/bin/env bash
# Installs MLflow (tracking server + Python client) for tests/mlflow.rs into .venv-mlflow from
# environment/requirements-mlflow.txt, skipping the install when the stamp says it is done,
# and prints the path of its `mlflow` program (for DEEPSYNTH_MLFLOW) on stdout.
# Needs Python 3 with the venv module and access to PyPI (the first time).
# Environment: PYTHON (default python3) picks the interpreter; DEEPSYNTH_MLFLOW_VENV the folder.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
venv="${DEEPSYNTH_MLFLOW_VENV:-$repo/.venv-mlflow}"
requirements="$repo/environment/requirements-mlflow.txt"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup-mlflow: creating $venv" >&2
    "$python" -m venv "$venv"
fi
# The stamp records what was installed: the requirements file and the venv's Python version.
stamp="$venv/.deepsynth-requirements-mlflow.sha256"
want="$({ cat "$requirements"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-mlflow: requirements already installed" >&2
else
    echo "setup-mlflow: pip install -r environment/requirements-mlflow.txt" >&2
    start=$SECONDS
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements" >&2
    echo "setup-mlflow: installed in $((SECONDS - start)) s" >&2
    echo "$want" >"$stamp"
fi
echo "$venv/bin/mlflow"
