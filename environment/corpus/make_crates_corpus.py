#!/usr/bin/env python3
"""Builds DeepSynth's bundled corpus: the README of every permissively licensed crate in a
local Cargo registry (the crates this project builds with), with the crate's own one-line
`description` from Cargo.toml as the reference summary.

    python3 environment/corpus/make_crates_corpus.py ~/.cargo/registry/src/*/ data/crates-readme

Each row: id, text (the README's prose, markdown syntax removed, at most --max-chars), summary,
crate, version, license (SPDX expression from Cargo.toml), authors (the copyright holders).
Rows are sorted by crate name, one per crate (its newest version), so the output is stable;
every 8th row goes to test.jsonl (the held-out split), the rest to train.jsonl.
"""
import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

PERMISSIVE = {
    "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "Unlicense", "0BSD",
    "BSL-1.0", "CC0-1.0", "Unicode-3.0", "Unicode-DFS-2016", "MIT-0", "LLVM-exception",
}


def permissive(expr: str) -> bool:
    tokens = [t for t in re.split(r"[\s()/]+", expr) if t and t not in ("OR", "AND", "WITH")]
    return bool(tokens) and all(t in PERMISSIVE for t in tokens)


def prose(md: str) -> str:
    md = re.sub(r"```.*?```", " ", md, flags=re.S)          # fenced code
    md = re.sub(r"<!--.*?-->", " ", md, flags=re.S)          # comments
    md = re.sub(r"<[^>]+>", " ", md)                          # html tags
    md = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", md)             # images
    md = re.sub(r"\[!\[[^\]]*\]\([^)]*\)\]\([^)]*\)", " ", md)  # linked badges
    md = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", md)          # links -> text
    md = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", md)         # reference links
    md = re.sub(r"^\s*\[[^\]]+\]:.*$", " ", md, flags=re.M)   # link definitions
    md = re.sub(r"`([^`]*)`", r"\1", md)                      # inline code
    md = re.sub(r"^\s{0,3}#+\s*", "", md, flags=re.M)         # headings
    md = re.sub(r"^\s*[-*+]\s+", "", md, flags=re.M)          # bullets
    md = re.sub(r"^\s*\|.*\|\s*$", " ", md, flags=re.M)       # tables
    md = re.sub(r"[*_]{1,3}([^*_\n]+)[*_]{1,3}", r"\1", md)   # emphasis
    md = re.sub(r"^[=\-]{3,}\s*$", " ", md, flags=re.M)       # setext rules
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", md)]
    return "\n\n".join(p for p in paras if len(p) > 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("registry", type=Path, help="a ~/.cargo/registry/src/<index>/ folder")
    ap.add_argument("out", type=Path, help="folder for train.jsonl and test.jsonl")
    ap.add_argument("--max-chars", type=int, default=900)
    ap.add_argument("--min-chars", type=int, default=250)
    a = ap.parse_args()
    newest = {}
    for d in sorted(a.registry.iterdir()):
        manifest = d / "Cargo.toml"
        if not manifest.is_file():
            continue
        try:
            pkg = tomllib.loads(manifest.read_text(encoding="utf-8"))["package"]
        except Exception:
            continue
        name, version = pkg.get("name"), str(pkg.get("version"))
        key = tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.+-]", version)[:3])
        if name in newest and newest[name][0] >= key:
            continue
        newest[name] = (key, d, pkg)
    kept = 0
    a.out.mkdir(parents=True, exist_ok=True)
    train = open(a.out / "train.jsonl", "w", encoding="utf-8")
    test = open(a.out / "test.jsonl", "w", encoding="utf-8")
    for name in sorted(newest):
        _, d, pkg = newest[name]
        desc = re.sub(r"\s+", " ", str(pkg.get("description", ""))).strip()
        lic = str(pkg.get("license", ""))
        readme = pkg.get("readme")
        path = d / readme if isinstance(readme, str) else d / "README.md"
        if not path.is_file() or len(desc) < 20 or not permissive(lic):
            continue
        text = prose(path.read_text(encoding="utf-8", errors="replace"))
        if len(text) > a.max_chars:
            cut = text.rfind(" ", 0, a.max_chars)
            text = text[: cut if cut > 0 else a.max_chars]
        if len(text) < a.min_chars:
            continue
        authors = pkg.get("authors", [])
        row = {
            "id": f"{name}@{pkg['version']}",
            "text": text,
            "summary": desc,
            "crate": name,
            "version": str(pkg["version"]),
            "license": lic,
            "authors": authors if isinstance(authors, list) else [],
        }
        (test if kept % 8 == 7 else train).write(json.dumps(row, ensure_ascii=False) + "\n")
        kept += 1
    train.close()
    test.close()
    print(f"{kept} crates kept of {len(newest)}", file=sys.stderr)


if __name__ == "__main__":
    main()
