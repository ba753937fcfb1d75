#!/usr/bin/env bash
# Opens the notebooks in JupyterLab with the deepsynth kernel:
#   bash environment/jupyterlab.sh [extra jupyter lab options, e.g. --no-browser --port 8890]
# Runs environment/setup.sh, adds JupyterLab (requirements-lab.txt) to .venv, then starts it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash environment/setup.sh
stamp="$repo/.venv/.deepsynth-requirements-lab.sha256"
want="$(cat environment/requirements-lab.txt environment/requirements-notebooks.txt | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "jupyterlab: pip install -r environment/requirements-lab.txt"
    "$repo/.venv/bin/python" -m pip install --disable-pip-version-check --quiet -r environment/requirements-lab.txt
    echo "$want" >"$stamp"
fi
exec "$repo/.venv/bin/jupyter" lab "$@" notebooks/
