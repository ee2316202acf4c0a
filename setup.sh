#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything the library, the workflow and the tests need.
#   bash setup.sh            # CPU machine or GPU machine alike
# PYTHON=python3.11 bash setup.sh to choose the interpreter; VENV=path to choose the folder.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, pinned, so that nothing else pulls a different build.
"$VENV/bin/python" -m pip install --quiet "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
"$VENV/bin/python" -m pip install --quiet -e ".[workflow,test]"
"$VENV/bin/python" -c "import torch, timm, snakemake; print('weightselect environment ready: torch', torch.__version__, 'timm', timm.__version__)"
