#!/usr/bin/env bash
# Set up a virtual environment in .venv with exactly the locked versions (locks/constraints.txt) of
# everything the library, the workflow, the Hugging Face models and the tests need.
#   bash setup.sh            # CPU machine or GPU machine alike (Linux x86_64; Python of the lock)
# PYTHON=python3.11 bash setup.sh to choose the interpreter; VENV=path to choose the folder.
# The lock is regenerated from pyproject.toml with `bash locks/update` (docs/environments.md).
set -euo pipefail
cd "$(dirname "$0")"
LOCK=locks/constraints.txt
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
want="$(sed -n 's/.*CPython \([0-9]*\.[0-9]*\).*/\1/p' "$LOCK" | head -n 1)"
have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$have" != "$want" ]; then
  echo "setup.sh: $PYTHON is Python $have, the lock is for Python $want; run PYTHON=python$want bash setup.sh" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
# pip and setuptools first, at their locked versions; setuptools then builds this package in place
# (no build isolation: nothing unpinned is downloaded for the build).
"$py" -m pip install --quiet -c "$LOCK" pip setuptools
"$py" -m pip install --quiet --no-build-isolation -c "$LOCK" -e ".[workflow,test,hf]"
"$py" -c "import torch, timm, snakemake, transformers; print('weightselect environment ready: torch', torch.__version__, 'timm', timm.__version__, 'snakemake', snakemake.__version__)"
