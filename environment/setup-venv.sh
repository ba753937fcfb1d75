#!/usr/bin/env bash
# Usage: setup-venv.sh NAME PROGRAM
# Installs environment/requirements-NAME.txt into a Python venv (DEEPSYNTH_<NAME>_VENV, default
# .venv-NAME), skipping the install when its stamp says it is done, and prints the path of the
# venv's bin/PROGRAM on stdout. Used for the Python peers of the integration tests: mlflow
# (tests/mlflow.rs), wandb (tests/wandb.rs), hub (tests/hub_push.rs).
# Needs Python 3 with the venv module and access to PyPI (the first time).
# Environment: PYTHON (default python3) picks the interpreter.
set -euo pipefail
name="$1"
program="$2"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
var="DEEPSYNTH_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')_VENV"
venv="${!var:-$repo/.venv-$name}"
requirements="$repo/environment/requirements-$name.txt"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup-$name: creating $venv" >&2
    "$python" -m venv "$venv"
fi
# The stamp records what was installed: the requirements file and the venv's Python version.
stamp="$venv/.deepsynth-requirements-$name.sha256"
want="$({ cat "$requirements"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-$name: requirements already installed" >&2
else
    echo "setup-$name: pip install -r environment/requirements-$name.txt" >&2
    start=$SECONDS
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements" >&2
    echo "setup-$name: installed in $((SECONDS - start)) s" >&2
    echo "$want" >"$stamp"
fi
echo "$venv/bin/$program"
