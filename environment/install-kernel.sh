#!/usr/bin/env bash
# Installs the `deepsynth` Jupyter kernel (evcxr_jupyter with this crate preloaded) for this user.
#
# Fills kernels/deepsynth/*.in and writes, in EVCXR_CONFIG_DIR = ${XDG_CONFIG_HOME:-$HOME/.config}/deepsynth/evcxr:
#   evcxr.toml         (opt_level "0" for cells, preserve_vars_on_panic false)
#   init.evcxr         (:cache, :dep deepsynth = this repo)
#   prelude.rs         (use deepsynth::prelude::*;)
#   cargo-config.toml  (dependencies at opt-level 3; the launcher copies it into the build root)
#   launch.sh          (gives the kernel a persistent build folder, then runs evcxr_jupyter)
# then installs the kernelspec (kernel.json running launch.sh with that config dir) into the
# user's Jupyter data dir. Re-running replaces all of them. Build folders live under
# DEEPSYNTH_EVCXR_BUILD (default ${XDG_CACHE_HOME:-$HOME/.cache}/deepsynth/evcxr-build).
# Needs evcxr_jupyter and .venv (environment/setup.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

venv_python="$repo/.venv/bin/python"
[[ -x "$venv_python" ]] || { echo "install-kernel: $venv_python missing; run environment/setup.sh" >&2; exit 1; }

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [[ -x "$cargo_bin/evcxr_jupyter" ]]; then
    evcxr_jupyter="$cargo_bin/evcxr_jupyter"
elif command -v evcxr_jupyter >/dev/null 2>&1; then
    evcxr_jupyter="$(command -v evcxr_jupyter)"
else
    echo "install-kernel: evcxr_jupyter not found; run environment/setup.sh" >&2
    exit 1
fi
evcxr_jupyter="$(cd "$(dirname "$evcxr_jupyter")" && pwd)/$(basename "$evcxr_jupyter")"

config_dir="${XDG_CONFIG_HOME:-$HOME/.config}/deepsynth/evcxr"
mkdir -p "$config_dir"
build_root="${DEEPSYNTH_EVCXR_BUILD:-${XDG_CACHE_HOME:-$HOME/.cache}/deepsynth/evcxr-build}"

# The repo path goes into a TOML string (init.evcxr), the paths into JSON (kernel.json), and all
# of them through sed below: refuse the characters that would need escaping there.
case "$repo$config_dir$evcxr_jupyter$build_root" in
    *'"'* | *'\'* | *$'\n'* | *'|'* | *'&'*)
        echo "install-kernel: paths containing \" \\ | & or newlines are not supported" >&2
        exit 1
        ;;
esac

spec_dir="$(mktemp -d)"
trap 'rm -rf "$spec_dir"' EXIT

fill() { # fill TEMPLATE OUTPUT
    sed -e "s|@REPO@|$repo|g" \
        -e "s|@EVCXR_CONFIG_DIR@|$config_dir|g" \
        -e "s|@EVCXR_JUPYTER@|$evcxr_jupyter|g" \
        -e "s|@BUILD_ROOT@|$build_root|g" \
        -e "s|@CARGO_CONFIG@|$config_dir/cargo-config.toml|g" \
        -e "s|@LAUNCHER@|$config_dir/launch.sh|g" "$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}
copy() { # copy FILE DEST
    cp "$1" "$2.tmp"
    mv "$2.tmp" "$2"
}
fill kernels/deepsynth/init.evcxr.in "$config_dir/init.evcxr"
fill kernels/deepsynth/launch.sh.in "$config_dir/launch.sh"
chmod +x "$config_dir/launch.sh"
copy kernels/deepsynth/prelude.rs "$config_dir/prelude.rs"
copy kernels/deepsynth/evcxr.toml "$config_dir/evcxr.toml"
copy kernels/deepsynth/cargo-config.toml "$config_dir/cargo-config.toml"
fill kernels/deepsynth/kernel.json.in "$spec_dir/kernel.json"
"$venv_python" -c 'import json, sys; json.load(open(sys.argv[1]))' "$spec_dir/kernel.json"

if [[ -x "$repo/.venv/bin/jupyter" ]] && "$repo/.venv/bin/jupyter" kernelspec --version >/dev/null 2>&1; then
    "$repo/.venv/bin/jupyter" kernelspec install --user --replace --name deepsynth "$spec_dir" 2>&1 |
        sed 's/^/install-kernel: /'
else
    # No `jupyter` entry point: write the kernelspec where jupyter_client looks for user kernels.
    data_dir="$("$venv_python" -c 'import jupyter_core.paths as p; print(p.jupyter_data_dir())')"
    dest="$data_dir/kernels/deepsynth"
    mkdir -p "$dest"
    cp "$spec_dir/kernel.json" "$dest/kernel.json"
    echo "install-kernel: installed kernelspec deepsynth in $dest"
fi
echo "install-kernel: evcxr config in $config_dir (crate: $repo; build folders in $build_root)"
