#!/usr/bin/env bash
# Installs what the notebooks need, skipping every step that is already done:
#   1. evcxr_jupyter 0.22.0 (the Rust Jupyter kernel), with `cargo install --locked`;
#   2. the Rust standard library sources (`rust-src`), which evcxr's rust-analyzer needs to infer
#      the types of notebook variables;
#   3. a Python venv in .venv with the pinned notebook runner and TensorBoard (requirements-notebooks.txt);
#   4. the `deepsynth` kernelspec and its evcxr config (environment/install-kernel.sh).
# Needs a Rust toolchain (cargo), Python 3 with the venv module, and access to crates.io and PyPI.
# Environment: PYTHON (default python3) picks the interpreter the venv is made from.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

evcxr_version="0.22.0"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
python="${PYTHON:-python3}"

# --- 1. evcxr_jupyter -------------------------------------------------------------------------
# evcxr_jupyter has no --version flag (it rejects unknown options), so ask cargo what it installed.
installed_evcxr_version() {
    command -v cargo >/dev/null 2>&1 || return 0
    cargo install --list 2>/dev/null | sed -n 's/^evcxr_jupyter v\([^:]*\):$/\1/p'
}
evcxr_bin=""
if [[ -x "$cargo_bin/evcxr_jupyter" ]]; then
    evcxr_bin="$cargo_bin/evcxr_jupyter"
elif command -v evcxr_jupyter >/dev/null 2>&1; then
    evcxr_bin="$(command -v evcxr_jupyter)"
fi
if [[ -n "$evcxr_bin" && "$(installed_evcxr_version)" == "$evcxr_version" ]]; then
    echo "setup: evcxr_jupyter $evcxr_version already installed ($evcxr_bin)"
else
    command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust first (https://rustup.rs)" >&2; exit 1; }
    echo "setup: installing evcxr_jupyter $evcxr_version (cargo install --locked; takes a while)"
    cargo install --locked "evcxr_jupyter@$evcxr_version"
fi

# --- 2. rust-src -------------------------------------------------------------------------------
# evcxr's README: "You'll also need the source for the Rust standard library installed"
# (rust-analyzer, which evcxr uses for variable types and completions, reads it).
if command -v rustup >/dev/null 2>&1; then
    if rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
        echo "setup: rust-src already installed"
    else
        echo "setup: rustup component add rust-src"
        rustup component add rust-src
    fi
else
    sysroot="$(rustc --print sysroot 2>/dev/null || true)"
    if [[ -z "$sysroot" || ! -d "$sysroot/lib/rustlib/src/rust/library" ]]; then
        echo "setup: warning: no rustup and no rust-src in '$sysroot'; evcxr may fail to infer variable types" >&2
    fi
fi

# --- 3. Python venv with the notebook runner ---------------------------------------------------
venv="$repo/.venv"
requirements="$repo/environment/requirements-notebooks.txt"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi
# The stamp records what was installed: the requirements file and the venv's Python version.
stamp="$venv/.deepsynth-requirements-notebooks.sha256"
want="$({ cat "$requirements"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup: notebook runner requirements already installed"
else
    echo "setup: pip install -r environment/requirements-notebooks.txt"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
    echo "$want" >"$stamp"
fi

# --- 4. kernelspec -----------------------------------------------------------------------------
bash "$repo/environment/install-kernel.sh"
