#!/usr/bin/env python3
"""Runs the notebooks headlessly through the `deepsynth` kernel (evcxr_jupyter) and checks them.

Usage: run_notebooks.py [--write] [--out DIR] [--kernel NAME] [--timeout S] [--startup-timeout S]
                        [NOTEBOOK ...]

Without arguments every notebooks/*.ipynb runs, in sorted order; each runs in its own folder.
The notebooks are committed with their outputs. `--write` runs them and, for each notebook that
passes, writes the fresh outputs back into the notebook file (timing metadata dropped): that is
how the committed outputs are made and refreshed.

Checks, one line each:
  * every notebook must execute without error: no CellExecutionError (a compile error, a panic,
    a dead kernel), no output of type "error", no stream output containing "panicked at", and
    no output on stderr. evcxr 0.22 reports a `?` that returns an error from a cell only by
    printing the error on stderr (the cell still "succeeds"), so stderr output fails the
    notebook unless the cell's metadata has {"deepsynth": {"allow_stderr": true}};
  * every code cell whose metadata has {"deepsynth": {"expect": ["image/png", ...]}} must have
    each of those MIME types in the `data` of one of its execute_result / display_data outputs;
  * without --write, the committed outputs must still match the fresh run (one check per
    notebook): a notebook committed without outputs fails; the code cells must be the same
    (count and source); each code cell must have the same kinds of output (stream names and
    the MIME types of rich outputs, in order); and a cell whose metadata has
    {"deepsynth": {"stable_text": true}} (its printed text is deterministic) must print
    exactly the committed text. Images, tables and timings may differ.
The last line is `notebooks: N passed, M failed`; the exit status is 1 if M > 0 or no notebook
was found.

Timeouts: the kernel compiles the deepsynth crate while it starts (evcxr runs init.evcxr's
`:dep` and the prelude before it answers), so the startup timeout defaults to 3600 s (the first
start on a machine compiles every dependency optimised); the per-cell one to 1800 s.
"""

from __future__ import annotations

import argparse
import atexit
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

REPO = Path(__file__).resolve().parent.parent
RESULT_OUTPUTS = ("execute_result", "display_data")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log(msg: str) -> None:
    print(msg, flush=True)


def find_notebooks(args: list[str]) -> list[Path]:
    if args:
        return [Path(a).resolve() for a in args]
    return sorted((REPO / "notebooks").glob("*.ipynb"))


def display_name(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return text.strip()[:limit]


def cell_settings(cell) -> dict:
    meta = cell.get("metadata", {}).get("deepsynth", {})
    return meta if isinstance(meta, dict) else {}


def stream_text(out) -> str:
    text = out.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def output_problems(cell) -> list[str]:
    """Errors visible in a cell's outputs, even if the kernel reported success."""
    problems = []
    allow_stderr = bool(cell_settings(cell).get("allow_stderr", False))
    streams: dict[str, str] = {}  # evcxr sends a stream message per line: join them
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            problems.append(f"{out.get('ename', 'Error')}: {first_line(ANSI.sub('', str(out.get('evalue', ''))))}")
        elif out.get("output_type") == "stream":
            name = out.get("name", "stream")
            streams[name] = streams.get(name, "") + ANSI.sub("", stream_text(out))
    for name, text in streams.items():
        lines = text.splitlines()
        at = next((i for i, line in enumerate(lines) if "panicked at" in line), None)
        if at is not None:
            # "thread '...' panicked at FILE:LINE:COL:" then the message on the next line.
            panic = " ".join(line.strip() for line in lines[at : at + 2])
            problems.append(f"panic: {panic[:240]}")
        elif name == "stderr" and not allow_stderr and text.strip():
            problems.append(f"stderr (a `?` error?): {first_line(text)}")
    return problems


def error_details(cell, limit: int = 20) -> list[str]:
    """The kernel's traceback and stderr for a failed cell, without colour codes."""
    lines = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            for entry in out.get("traceback", []) or [f"{out.get('ename')}: {out.get('evalue')}"]:
                lines += ANSI.sub("", entry).splitlines()
        elif out.get("output_type") == "stream" and out.get("name") == "stderr":
            lines += ANSI.sub("", stream_text(out)).splitlines()
    if len(lines) > limit:
        lines = lines[: limit - 1] + [f"... ({len(lines) - limit + 1} more lines)"]
    return lines


def mime_types(cell) -> set[str]:
    found: set[str] = set()
    for out in cell.get("outputs", []):
        if out.get("output_type") in RESULT_OUTPUTS:
            found.update(out.get("data", {}).keys())
    return found


def expected_mime_types(cell) -> list[str] | None:
    expect = cell_settings(cell).get("expect")
    if expect is None:
        return None
    if isinstance(expect, str):
        return [expect]
    return list(expect)


class Tally:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, where: str, reason: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        log(f"{'PASS' if ok else 'FAIL'} {where}: {reason}")


def output_kinds(cell) -> list[str]:
    """The structure of a cell's outputs: stream names and rich MIME types, consecutive
    streams of the same name counted once (evcxr sends a stream message per line)."""
    kinds: list[str] = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            label = f"stream:{out.get('name')}"
        elif kind in RESULT_OUTPUTS:
            label = f"{kind}:{','.join(sorted(out.get('data', {}).keys()))}"
        else:
            label = str(kind)
        if not kinds or kinds[-1] != label or kind != "stream":
            kinds.append(label)
    return kinds


def stdout_text(cell) -> str:
    return "".join(
        stream_text(out)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stdout"
    )


def source_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def first_difference(a: str, b: str) -> str:
    """The first differing line of two texts, for a one-line report."""
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}: committed {x[:80]!r}, fresh {y[:80]!r}"
    return f"committed {len(la)} line(s), fresh {len(lb)} line(s)"


def staleness(committed, fresh) -> str | None:
    """Why the committed notebook's outputs no longer match a fresh run, or None."""
    old = [c for c in committed.cells if c.cell_type == "code"]
    new = [c for c in fresh.cells if c.cell_type == "code"]
    if not any(c.get("outputs") for c in old):
        return "committed without outputs (run environment/run-notebooks.sh --write NOTEBOOK)"
    if len(old) != len(new):
        return f"{len(old)} committed code cells, {len(new)} now"
    for i, (a, b) in enumerate(zip(old, new)):
        if source_text(a) != source_text(b):
            return f"code cell {i}: source changed since its outputs were committed"
        ka, kb = output_kinds(a), output_kinds(b)
        if ka != kb:
            return f"code cell {i}: committed outputs {ka}, fresh {kb}"
        if cell_settings(b).get("stable_text") and stdout_text(a) != stdout_text(b):
            return f"code cell {i}: printed text differs, {first_difference(stdout_text(a), stdout_text(b))}"
    return None


def strip_timing(nb) -> None:
    """Drops the per-cell execution timestamps nbclient records (they change on every run)."""
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)


def run_notebook(path: Path, args, tally: Tally) -> None:
    name = display_name(path)
    try:
        nb = nbformat.read(path, as_version=4)
        committed = nbformat.read(path, as_version=4)
    except Exception as e:  # unreadable or invalid JSON
        tally.check(False, name, f"cannot read notebook: {e}")
        return
    for cell in nb.cells:  # run from a clean slate: no stale outputs survive a failed cell
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None

    state = {"current": None, "executed": set(), "first_cell_at": None}

    def on_cell_start(cell, cell_index, **_):
        state["current"] = cell_index
        if state["first_cell_at"] is None:
            state["first_cell_at"] = time.monotonic()
        if cell.cell_type == "code":
            log(f"  {name} cell {cell_index}: running")

    def on_cell_executed(cell, cell_index, **_):
        state["executed"].add(cell_index)

    client = NotebookClient(
        nb,
        kernel_name=args.kernel,
        timeout=args.timeout,
        startup_timeout=args.startup_timeout,
        iopub_timeout=10,
        allow_errors=False,
        coalesce_streams=True,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=on_cell_start,
        on_cell_executed=on_cell_executed,
    )

    log(f"running {name} (kernel {args.kernel}) ...")
    start = time.monotonic()
    failure = None  # (cell index or None, reason)
    try:
        client.execute()
    except CellExecutionError as e:
        # evcxr puts the details in the cell's error output, not in the execute_reply.
        index = state["current"]
        cell_problems = output_problems(nb.cells[index]) if index is not None else []
        if cell_problems:
            # The most telling first: a panic, then the kernel's error, then stderr.
            reason = min(cell_problems, key=lambda p: (not p.startswith("panic"), p.startswith("stderr")))
        elif e.evalue:
            reason = f"{e.ename}: {first_line(e.evalue)}"
        else:
            reason = "execution error"
        failure = (index, reason)
    except CellTimeoutError as e:
        failure = (state["current"], f"timed out after {args.timeout} s ({first_line(str(e))})")
    except DeadKernelError as e:
        failure = (state["current"], f"kernel died ({first_line(str(e))})")
    except Exception as e:  # kernel start failures (RuntimeError on startup timeout), etc.
        failure = (state["current"], f"{type(e).__name__}: {first_line(str(e))}")
    finally:
        if client.km is None:
            # nbclient already cleaned up; its atexit hook would fail on the missing manager.
            atexit.unregister(client._cleanup_kernel)
    elapsed = time.monotonic() - start

    # Output-level problems (error outputs, panics, stderr), whether or not nbclient raised.
    problems = [
        (index, p)
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for p in output_problems(cell)
    ]
    if failure is None and problems:
        failure = problems[0]
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    if failure is None:
        started = state["first_cell_at"] - start if state["first_cell_at"] else float("nan")
        tally.check(
            True,
            name,
            f"executed {code_cells} code cell(s) without error in {elapsed:.1f} s "
            f"(kernel start {started:.1f} s)",
        )
    else:
        index, reason = failure
        if index is not None:
            for line in error_details(nb.cells[index]):
                log(f"  | {line}")
        where = f"cell {index}" if index is not None else "kernel start"
        tally.check(False, name, f"{where}: {reason} (after {elapsed:.1f} s)")
        others = [(i, p) for i, p in problems if i != index]
        for i, p in others[:5]:
            log(f"  also cell {i}: {p}")

    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        expect = expected_mime_types(cell)
        if expect is None:
            continue
        where = f"{name} cell {index}"
        if index not in state["executed"]:
            tally.check(False, where, f"expected {', '.join(expect)} but the cell did not run")
            continue
        found = mime_types(cell)
        missing = [m for m in expect if m not in found]
        if missing:
            got = ", ".join(sorted(found)) or "no rich output"
            tally.check(False, where, f"missing {', '.join(missing)} (got {got})")
        else:
            tally.check(True, where, f"has {', '.join(expect)}")

    strip_timing(nb)
    if args.write:
        if failure is None:
            tmp = path.with_name(path.name + ".tmp")
            nbformat.write(nb, tmp)
            tmp.replace(path)
            log(f"  wrote the outputs into {name}")
        else:
            log(f"  {name} failed: its committed outputs are left as they were")
    elif failure is None:
        stale = staleness(committed, nb)
        tally.check(stale is None, f"{name} committed outputs", stale or "match the fresh run")

    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--out", help="write the executed notebooks to this folder")
    parser.add_argument(
        "--write",
        action="store_true",
        help="write the fresh outputs back into each notebook that passes (instead of checking them)",
    )
    parser.add_argument("--kernel", default="deepsynth", help="kernelspec name (default: deepsynth)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default: 1800)")
    parser.add_argument(
        "--startup-timeout",
        type=int,
        default=3600,
        help="seconds for the kernel to start, which includes compiling the crate (default: 3600)",
    )
    args = parser.parse_args()

    notebooks = find_notebooks(args.notebooks)
    tally = Tally()
    if not notebooks:
        log("FAIL no notebooks found")
        tally.failed += 1
    for path in notebooks:
        if not path.is_file():
            tally.check(False, display_name(path), "no such file")
            continue
        run_notebook(path, args, tally)
    print(f"notebooks: {tally.passed} passed, {tally.failed} failed", flush=True)
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
