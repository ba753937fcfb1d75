#!/usr/bin/env python3
"""Measures the latency of the `deepsynth` notebook kernel, and notebook compute against the CLI.

Usage: .venv/bin/python environment/measure_kernel.py --cli PATH/TO/deepsynth [--cold] [--runs N]

Each run starts the kernel the way Jupyter does (jupyter_client, kernelspec `deepsynth`) and times,
as seen by the client:
  * start: from launching the kernel to its first kernel_info reply (evcxr compiles init.evcxr's
    `:dep` and the prelude before it answers, so this is the wait before the first cell);
  * trivial: a cell `1 + 1`, from the execute request to the kernel going idle;
  * page: a cell that renders a paragraph (Base preset) and shows the page as an image;
  * train: a cell that trains the bundled model for 10 optimiser steps (80 documents, batch 8, the
    quickstart's settings); `train steps` is the time between the `step 1 ` and `step 10 ` lines
    arriving at the client (9 steps of compute), `train cell` the whole cell (compile included).
Then the CLI does the same 10 steps (`deepsynth quickstart --max-train-samples 80 --epochs 1`),
its `step 1` and `step 10` lines timed the same way, as they arrive through a pipe.

--cold empties the kernel's build folders (slot-* under DEEPSYNTH_EVCXR_BUILD or
~/.cache/deepsynth/evcxr-build) and evcxr's compilation cache (~/.cache/evcxr) before the first
start only, so that start compiles every dependency. Later starts of the same invocation are
warm restarts. Prints one line per measurement and a summary.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent

TRIVIAL = "1 + 1"
PAGE = """
let page_renderer: Renderer = Renderer::from_preset(Preset::Base)?;
let page_out: Rendered = page_renderer.render("A page for the latency check: the renderer lays out \
this sentence, and the kernel shows the page as a PNG image.")?;
page_out
"""
TRAIN_SETUP = """
let root: std::path::PathBuf = find_root();
let mut b: Bundled = Bundled::load(&root, LoraConfig::new(8, 16.0).with_dropout(0.05), 42)?;
b.train.truncate(80);
let mut cfg: RunConfig = b.run_config(1, 2e-3, 1000, 1);
cfg.train.seed = 42;
let out_dir: std::path::PathBuf = std::env::temp_dir().join("deepsynth-latency-run");
let _ = std::fs::remove_dir_all(&out_dir);
"""
TRAIN = """
let mut tracker: RunTracker = RunTracker::open(&out_dir)?;
let outcome: RunOutcome = run(&mut b.model, &b.lora, &b.enc, &b.train, &b.test, &cfg, &out_dir,
                              &mut tracker, None, &mut |line: &str| println!("{line}"))?;
println!("{} steps", outcome.train_losses.len());
"""


def build_root() -> Path:
    env = os.environ.get("DEEPSYNTH_EVCXR_BUILD")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "deepsynth" / "evcxr-build"


def empty_caches() -> None:
    root = build_root()
    if root.is_dir():
        for slot in root.glob("slot-*"):
            if slot.is_dir():
                shutil.rmtree(slot)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "evcxr"
    if cache.is_dir():
        shutil.rmtree(cache)


class Kernel:
    def __init__(self) -> None:
        start = time.monotonic()
        self.km = KernelManager(kernel_name="deepsynth")
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=3600)
        self.start_s = time.monotonic() - start

    def run(self, code: str, timeout: float = 3600) -> tuple[float, list[tuple[float, str]], set[str]]:
        """Runs a cell: (seconds to idle, stdout lines with arrival times, MIME types shown)."""
        start = time.monotonic()
        msg_id = self.kc.execute(code)
        lines: list[tuple[float, str]] = []
        mimes: set[str] = set()
        errors: list[str] = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise RuntimeError("cell timed out") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            now = time.monotonic() - start
            if kind == "stream":
                for line in content["text"].splitlines():
                    lines.append((now, line))
                    if content["name"] == "stderr":
                        errors.append(line)
            elif kind in ("execute_result", "display_data"):
                mimes.update(content["data"].keys())
            elif kind == "error":
                errors.append(f"{content.get('ename')}: {content.get('evalue')}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if errors:
            raise RuntimeError("cell failed: " + " | ".join(errors[:5]))
        return time.monotonic() - start, lines, mimes

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def step_interval(lines: list[tuple[float, str]]) -> float:
    times = {}
    for t, line in lines:
        for n in (1, 10):
            if line.startswith(f"step {n} ") and n not in times:
                times[n] = t
    if set(times) != {1, 10}:
        raise RuntimeError(f"no step 1 / step 10 lines in {[l for _, l in lines][:12]}")
    return times[10] - times[1]


def cli_steps(cli: str) -> tuple[float, float]:
    """(seconds from the `step 1` to the `step 10` line, whole command) for the CLI."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [cli, "quickstart", "--max-train-samples", "80", "--epochs", "1", "--eval-steps", "1000",
               "--max-eval-samples", "1", "--output-dir", str(Path(out) / "run")]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
        lines = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - start, line.rstrip("\n")))
        if proc.wait() != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {[l for _, l in lines][-5:]}")
        return step_interval(lines), time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cli", required=True, help="the deepsynth binary (a release build)")
    parser.add_argument("--cold", action="store_true", help="empty the kernel's build caches first")
    parser.add_argument("--runs", type=int, default=3, help="kernel starts (default 3)")
    args = parser.parse_args()

    if args.cold:
        empty_caches()
    rows = []
    for run in range(args.runs):
        kernel = Kernel()
        try:
            label = "cold" if args.cold and run == 0 else "warm"
            trivial = [kernel.run(TRIVIAL)[0] for _ in range(3)]
            page, _, page_mimes = kernel.run(PAGE)
            if "image/png" not in page_mimes:
                raise RuntimeError(f"the page cell showed {page_mimes}, not image/png")
            page_again = kernel.run(PAGE)[0]
            kernel.run(TRAIN_SETUP)
            train_cell, lines, _ = kernel.run(TRAIN)
            train_steps = step_interval(lines)
        finally:
            kernel.close()
        row = dict(start=kernel.start_s, trivial=min(trivial), trivial_max=max(trivial), page=page,
                   page_again=page_again, train_cell=train_cell, train_steps=train_steps)
        rows.append(row)
        print(f"kernel run {run + 1} ({label} start): start {kernel.start_s:.1f} s, trivial cell "
              f"{min(trivial):.2f}-{max(trivial):.2f} s, page cell {page:.2f} s (again {page_again:.2f} s), "
              f"train cell {train_cell:.1f} s, steps 1->10 {train_steps:.2f} s", flush=True)
    cli = [cli_steps(args.cli) for _ in range(args.runs)]
    for steps, whole in cli:
        print(f"CLI: steps 1->10 {steps:.2f} s (whole command {whole:.1f} s)", flush=True)
    best_nb = min(r["train_steps"] for r in rows)
    best_cli = min(s for s, _ in cli)
    print(f"summary: notebook steps 1->10 best {best_nb:.2f} s, CLI best {best_cli:.2f} s, "
          f"ratio {best_nb / best_cli:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
