# DeepSynth -> Weights & Biases bridge (embedded in the deepsynth binary, run with the Python
# that has `wandb`). W&B has no logging API outside its Python SDK, and `wandb sync
# --sync-tensorboard` was removed in wandb 0.30, so this logs the run folder's metrics.jsonl
# (DeepSynth's record of every scalar) through the SDK.
#
# stdin: one JSON object {"dir", "metrics", "id", "project", "entity", "name", "config",
# "after", "upto"}; the records with after < step <= upto (either may be null) are logged, one wandb `log` call per step, at that
# step. stdout: one JSON line {"id", "steps", "values", "last_step", "mode", "url", "run_dir",
# "wandb_version"}.
import json
import sys

spec = json.load(sys.stdin)
import wandb  # noqa: E402  (after reading stdin: an import error is reported by the caller)

steps = {}
with open(spec["metrics"], encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError as e:
            sys.exit(f"{spec['metrics']}:{n}: bad record: {e}")
        if spec["after"] is not None and r["step"] <= spec["after"]:
            continue
        if spec["upto"] is not None and r["step"] > spec["upto"]:
            continue
        steps.setdefault(r["step"], {})[r["tag"]] = r["value"]

run = wandb.init(
    project=spec["project"],
    entity=spec["entity"],
    name=spec["name"],
    id=spec["id"],
    resume="allow",
    dir=spec["dir"],
    config=spec["config"],
    job_type="train",
)
values = 0
for step in sorted(steps):
    run.log(steps[step], step=step)
    values += len(steps[step])
url = getattr(run, "url", None)
run_dir = getattr(run, "dir", None)
mode = "offline" if getattr(run, "offline", False) else "online"
run.finish()
print(
    json.dumps(
        {
            "id": spec["id"],
            "steps": len(steps),
            "values": values,
            "last_step": max(steps) if steps else spec["after"],
            "mode": mode,
            "url": url,
            "run_dir": run_dir,
            "wandb_version": wandb.__version__,
        }
    )
)
