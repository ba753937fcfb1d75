"""Reads one MLflow run back with MLflow's own Python client and prints it as JSON.

Usage: mlflow_readback.py TRACKING_URI RUN_ID

Prints {status, run_name, experiment, params, tags, metrics: {key: [[step, value, timestamp],
...]}, artifacts: {path: {size, sha256}}}; metric values that JSON cannot hold are written as
"NaN", "Infinity", "-Infinity". Used by tests/mlflow.rs.
"""

import hashlib
import json
import math
import sys
import tempfile

from mlflow.tracking import MlflowClient


def value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def main():
    uri, run_id = sys.argv[1], sys.argv[2]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    metrics = {}
    for key in sorted(run.data.metrics):
        history = client.get_metric_history(run_id, key)
        metrics[key] = [[m.step, value(m.value), m.timestamp] for m in history]

    def files(path):
        for f in client.list_artifacts(run_id, path):
            if f.is_dir:
                yield from files(f.path)
            else:
                yield f

    artifacts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in files(None):
            local = client.download_artifacts(run_id, f.path, tmp)
            with open(local, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            artifacts[f.path] = {"size": f.file_size, "sha256": digest}
    print(
        json.dumps(
            {
                "status": run.info.status,
                "run_name": run.info.run_name,
                "experiment": client.get_experiment(run.info.experiment_id).name,
                "params": run.data.params,
                "tags": run.data.tags,
                "metrics": metrics,
                "artifacts": artifacts,
            }
        )
    )


if __name__ == "__main__":
    main()
