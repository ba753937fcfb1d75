#!/usr/bin/env bash
# Installs MLflow (tracking server + Python client) for tests/mlflow.rs into .venv-mlflow
# (DEEPSYNTH_MLFLOW_VENV) from environment/requirements-mlflow.txt and prints the path of its
# `mlflow` program (for DEEPSYNTH_MLFLOW). See setup-venv.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh" mlflow mlflow
