"""Write the files that name the locked versions, from the lock (locks/constraints.txt).

    python locks/render.py           # rewrite envs/weightselect.yaml, environment.yml, containers/weightselect.def
    python locks/render.py --check   # exit 1 naming the files that differ from what the lock gives

The rule environment takes the pins of locks/rule-env.txt (the lock less the test tools, written by
locks/closure.py); the conda environment and the container take the whole lock.

The lock itself comes from pyproject.toml through `bash locks/update`; these three files are
generated from it so that the rule environment (`snakemake --sdm conda`), the conda environment for
interactive use on a cluster and the container image (`snakemake --sdm apptainer`) install exactly
the versions of the lock. See docs/environments.md.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "locks" / "constraints.txt"
RULE_LOCK = ROOT / "locks" / "rule-env.txt"
RULE_ENV = ROOT / "envs" / "weightselect.yaml"
CONDA_ENV = ROOT / "environment.yml"
CONTAINER = ROOT / "containers" / "weightselect.def"
EXTRAS = "workflow,test,hf"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def read_lock(path: Path = LOCK) -> tuple[str, list[str]]:
    """The Python version ("3.11") and the pins ("name==version", in file order) of the lock.

    Raises ValueError naming the line when a line is neither a comment nor an exact pin, or when
    the header does not say which Python the lock is for.
    """
    python, pins = None, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            found = re.search(r"CPython (\d+\.\d+)", line)
            python = python or (found and found.group(1))
            continue
        if not PIN.match(line):
            raise ValueError(f"{path.name}:{number}: {line!r} is not an exact pin (name==version)")
        pins.append(line)
    if python is None:
        raise ValueError(f"{path.name}: the header does not name the Python version (CPython X.Y)")
    return python, pins


def _header(purpose: list[str]) -> list[str]:
    return [f"# {line}" if line else "#" for line in purpose] + [
        "# Generated from locks/constraints.txt by `python locks/render.py`: do not edit by hand.",
    ]


def rule_env(python: str, pins: list[str]) -> str:
    """envs/weightselect.yaml: the software of every rule under `snakemake --sdm conda`."""
    lines = _header([
        "Software of every rule under `snakemake --sdm conda`: Python from conda-forge, everything else",
        "from PyPI at the locked versions of what the jobs need (locks/rule-env.txt: the lock less the",
        "test tools). The weightselect package itself is installed from the workflow's source tree by",
        "weightselect.post-deploy.sh beside this file, which Snakemake runs once after creating the",
        "environment (a relative path here would be read from the folder Snakemake copies this file",
        "to, .snakemake/conda/, not from envs/).",
    ])
    lines += ["channels:", "  - conda-forge", "  - nodefaults", "dependencies:", f"  - python={python}",
              "  - pip", "  - pip:"]
    lines += [f"      - {pin}" for pin in pins]
    return "\n".join(lines) + "\n"


def conda_env(python: str, pins: list[str]) -> str:
    """environment.yml: an environment with the package (editable) and every extra, for a cluster."""
    lines = _header([
        "The whole project in a conda environment (for a cluster without a usable python3.11):",
        "  conda env create -f environment.yml && conda activate weightselect",
        "Run from the repository root: conda runs pip in this file's folder, so `-e .` is this repository.",
    ])
    lines += ["name: weightselect", "channels:", "  - conda-forge", "  - nodefaults", "dependencies:",
              f"  - python={python}", "  - pip", "  - pip:"]
    lines += [f"      - {pin}" for pin in pins]
    lines.append(f"      - -e .[{EXTRAS}]")
    return "\n".join(lines) + "\n"


def container_def(python: str, pins: list[str]) -> str:
    """containers/weightselect.def: an Apptainer image with the locked software and the package."""
    versions = dict(pin.split("==") for pin in pins)
    labels = [f"    {name}.version {versions[name]}" for name in ("torch", "torchvision", "timm", "snakemake")
              if name in versions]
    lines = _header([
        "Apptainer image for `snakemake --sdm apptainer`: the locked software and this package.",
        "Build from the repository root (the %files paths are relative to it):",
        "  apptainer build weightselect.sif containers/weightselect.def",
    ])
    lines += [
        "Bootstrap: docker",
        f"From: python:{python}-slim-bookworm",
        "",
        "%labels",
        "    org.opencontainers.image.title weightselect",
        "    org.opencontainers.image.licenses MIT",
        *labels,
        "",
        "%files",
        "    pyproject.toml /opt/weightselect/pyproject.toml",
        "    README.md /opt/weightselect/README.md",
        "    LICENSE /opt/weightselect/LICENSE",
        "    weightselect /opt/weightselect/weightselect",
        "",
        "%post",
        "set -eu",
        "cat > /opt/weightselect/requirements.lock <<'LOCK'",
        *pins,
        "LOCK",
        "python -m pip install --no-cache-dir --no-deps -r /opt/weightselect/requirements.lock",
        "python -m pip install --no-cache-dir --no-deps --no-build-isolation /opt/weightselect",
        "python -m pip check",
        "",
        "%environment",
        "    export PYTHONNOUSERSITE=1",
        "    export MPLBACKEND=Agg",
        "",
        "%runscript",
        '    exec weightselect "$@"',
        "",
        "%test",
        "    python -c 'import weightselect, torch, timm, snakemake; print(\"torch\", torch.__version__, \"timm\", timm.__version__)'",
        "    weightselect --help >/dev/null",
    ]
    return "\n".join(lines) + "\n"


def expected() -> dict[Path, str]:
    """Every generated file and the text the lock gives it."""
    python, pins = read_lock()
    _, rule_pins = read_lock(RULE_LOCK)
    return {RULE_ENV: rule_env(python, rule_pins), CONDA_ENV: conda_env(python, pins),
            CONTAINER: container_def(python, pins)}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in expected().items():
        if "--check" in argv:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"render: {', '.join(stale)} differ from locks/constraints.txt; run `python locks/render.py`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
