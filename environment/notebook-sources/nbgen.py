"""Helpers for the notebook source scripts: markdown / code cells and writing the notebook."""
import json

cells = []


def md(text):
    cells.append({"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)})


def code(text, expect=None, stable=False):
    """A code cell; `expect` lists the MIME types the notebook runner checks the cell produces;
    `stable` says the cell prints the same text on every run and machine (the runner then checks
    that the committed text still matches a fresh run)."""
    settings = {}
    if expect:
        settings["expect"] = expect
    if stable:
        settings["stable_text"] = True
    meta = {"deepsynth": settings} if settings else {}
    cells.append({"cell_type": "code", "metadata": meta, "execution_count": None, "outputs": [],
                  "source": text.strip("\n").splitlines(keepends=True)})


def write(path):
    """Writes the cells collected so far as a notebook for the DeepSynth kernel, without outputs
    (environment/run-notebooks.sh --write NOTEBOOK then runs it and commits its outputs)."""
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "DeepSynth (Rust)", "language": "rust", "name": "deepsynth"},
            "language_info": {"name": "rust"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"cell-{i:02d}"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
