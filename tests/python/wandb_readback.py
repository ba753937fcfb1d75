"""Reads back the offline W&B runs of a DeepSynth run folder (<dir>/wandb/offline-run-*/run-*.wandb)
and prints them as one JSON object: {"runs": [{"id", "name", "project", "config"}],
"history": [[step, key, value], ...]} (every logged value, in file order, runs in start order).

W&B's own Python datastore reader was removed (wandb-core reads these files in Go), so the
framing, LevelDB's log format behind a 7-byte ':W&B' header, is read here; each record is decoded
with wandb's own protobuf definitions (wandb.proto.wandb_internal_pb2.Record).

Usage: python wandb_readback.py RUN_DIR   (the Python of a venv with wandb)
"""
import glob
import json
import os
import struct
import sys

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path):
    data = open(path, "rb").read()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1:
        sys.exit(f"{path}: not a W&B run file ({ident!r}, {magic:#x})")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if n == 0 and kind == 0:  # zero padding to the end of the block
            pos += (BLOCK - pos % BLOCK) % BLOCK
            continue
        chunk = data[pos : pos + n]
        pos += n
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:
            sys.exit(f"{path}: bad record type {kind} at byte {pos - n - 7}")


def key(item):
    return item.key or "/".join(item.nested_key)


out = {"runs": [], "history": []}
for run_dir in sorted(glob.glob(os.path.join(sys.argv[1], "wandb", "offline-run-*"))):
    for f in sorted(glob.glob(os.path.join(run_dir, "run-*.wandb"))):
        for raw in records(f):
            r = pb.Record()
            r.ParseFromString(raw)
            kind = r.WhichOneof("record_type")
            if kind == "run":
                config = {key(u): json.loads(u.value_json) for u in r.run.config.update}
                config.pop("_wandb", None)
                out["runs"].append(
                    {
                        "id": r.run.run_id,
                        "name": r.run.display_name,
                        "project": r.run.project,
                        "config": config,
                    }
                )
            elif kind == "history":
                items = {key(i): json.loads(i.value_json) for i in r.history.item}
                step = r.history.step.num
                for k, v in items.items():
                    if not k.startswith("_"):
                        out["history"].append([step, k, v])
print(json.dumps(out))
