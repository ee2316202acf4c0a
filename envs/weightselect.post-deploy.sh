#!/usr/bin/env bash
# Snakemake runs this once in a freshly created rule environment (`--sdm conda`, the environment
# activated, $CONDA_PREFIX pointing at it, the working directory being Snakemake's): it installs
# the weightselect package from the workflow's source tree, editable, so that every job imports the
# code of this checkout. The source tree is $WEIGHTSELECT_SOURCE when set, else the working
# directory (snakemake run from the repository root, as docs/environments.md says).
set -euo pipefail
src="${WEIGHTSELECT_SOURCE:-$PWD}"
if ! grep -qs '^name = "weightselect"' "$src/pyproject.toml"; then
  echo "weightselect post-deploy: $src is not the weightselect repository;" \
    "run snakemake from the repository root or set WEIGHTSELECT_SOURCE=/path/to/weightselect" >&2
  exit 1
fi
# setuptools is in the environment at its locked version: no build isolation, nothing downloaded.
python -m pip install --quiet --no-deps --no-build-isolation -e "$src"
python -c 'import weightselect' || {
  echo "weightselect post-deploy: installed from $src but 'import weightselect' fails" >&2
  exit 1
}
