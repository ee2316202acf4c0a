"""Packaging and environments: the licence, the lock against pyproject.toml, the files generated
from the lock (rule environment, conda environment, Apptainer definition), a quiet editable install,
and (slow) a fresh environment built only from the rule environment file running a `ci` job."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "locks"))
import render  # noqa: E402  (locks/render.py: the generator of the files checked here)

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def lock_versions() -> dict[str, str]:
    _, pins = render.read_lock()
    return {canonicalize_name(name): version for name, version in (pin.split("==") for pin in pins)}


# Extras that locks/update does not install, so the lock does not pin them (optional add-ons).
UNLOCKED_EXTRAS = {"tensorboard"}


def locked_extras() -> list[str]:
    """The extras locks/update installs into the environment it freezes: its `-e ".[a,b,c]"`."""
    found = re.search(r'-e "\.\[([\w,-]+)\]"', (REPO / "locks" / "update").read_text())
    assert found, "locks/update installs no extras"
    return found.group(1).split(",")


def declared_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    declared = list(project["dependencies"])
    for extra in locked_extras():
        declared += project["optional-dependencies"][extra]
    return [Requirement(text) for text in declared]


def test_every_extra_is_locked_but_the_optional_add_ons():
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    assert extras - set(locked_extras()) == UNLOCKED_EXTRAS


# ------------------------------------------------------------------------------ licence
def test_license_file_matches_the_declared_spdx_licence():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"  # an SPDX expression, not the deprecated {text = ...} table
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert not any("License ::" in c for c in project.get("classifiers", []))  # PEP 639: not both


# ------------------------------------------------------------------------------ lock vs pyproject
def test_lock_pins_every_declared_dependency_within_its_range():
    locked = lock_versions()
    problems = []
    for req in declared_requirements():
        version = locked.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} does not satisfy {req}")
    assert not problems, "; ".join(problems) + " (regenerate it: bash locks/update)"


def test_lock_has_only_exact_pins_and_names_its_python(tmp_path):
    python, pins = render.read_lock()
    assert re.fullmatch(r"3\.\d+", python)
    assert len(pins) == len(lock_versions()), "a package is pinned twice"
    for name in ("pip", "setuptools", "torch", "torchvision", "timm", "snakemake", "transformers"):
        assert canonicalize_name(name) in lock_versions()
    bad = tmp_path / "constraints.txt"
    bad.write_text("# for CPython 3.11\ntorch>=2.1\n")
    with pytest.raises(ValueError, match=r"constraints.txt:2: 'torch>=2.1' is not an exact pin"):
        render.read_lock(bad)


def test_setup_and_ci_install_from_the_lock():
    setup = (REPO / "setup.sh").read_text()
    assert 'LOCK=locks/constraints.txt' in setup
    installs = [line for line in setup.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all('-c "$LOCK"' in line for line in installs)
    assert any(".[workflow,test,hf]" in line for line in installs)
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash setup.sh" in ci and "bash .ci/check-lock" in ci


# ------------------------------------------------------------------------------ generated files
def test_generated_files_are_what_the_lock_gives():
    stale = [str(path.relative_to(REPO)) for path, text in render.expected().items() if path.read_text() != text]
    assert not stale, f"{stale} differ from locks/constraints.txt: run `python locks/render.py`"


def pip_section(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1
    return sections[0]


def rule_env_versions() -> dict[str, str]:
    _, pins = render.read_lock(render.RULE_LOCK)
    return {canonicalize_name(name): version for name, version in (pin.split("==") for pin in pins)}


def test_rule_environment_names_the_locked_versions_and_installs_the_package():
    env = yaml.safe_load((REPO / "envs" / "weightselect.yaml").read_text())
    python, _ = render.read_lock()
    assert f"python={python}" in env["dependencies"] and "pip" in env["dependencies"]
    pinned = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pip_section(env)}
    assert pinned == rule_env_versions()
    locked = lock_versions()
    assert all(locked.get(name) == version for name, version in pinned.items())  # the lock's versions
    # every rule that declares a conda environment uses this file
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for env_file in re.findall(r"conda:\s*\n\s*\"([^\"]+)\"", smk.read_text()):
            assert (smk.parent / env_file).resolve() == REPO / "envs" / "weightselect.yaml", smk.name
    # the package itself: Snakemake runs <env>.post-deploy.sh beside the file after creating it
    post_deploy = (REPO / "envs" / "weightselect.post-deploy.sh").read_text()
    assert post_deploy.startswith("#!/usr/bin/env bash\n")
    assert 'pip install --quiet --no-deps --no-build-isolation -e "$src"' in post_deploy


def test_rule_environment_carries_what_the_jobs_need_and_no_test_tools():
    import closure  # locks/closure.py

    pinned = set(rule_env_versions())
    assert pinned == closure.needed_names()  # this environment holds the lock (.ci/check-lock)
    for name in ("torch", "timm", "snakemake", "transformers", "safetensors", "pip", "setuptools", "packaging"):
        assert canonicalize_name(name) in pinned, name
    assert {"pytest", "snakefmt", "selenium", "black", "pluggy", "iniconfig"}.isdisjoint(pinned)


def test_post_deploy_refuses_a_folder_that_is_not_the_repository(tmp_path):
    done = subprocess.run(["bash", str(REPO / "envs" / "weightselect.post-deploy.sh")], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "WEIGHTSELECT_SOURCE": ""})
    assert done.returncode == 1
    assert f"{tmp_path} is not the weightselect repository" in done.stderr
    assert "WEIGHTSELECT_SOURCE=" in done.stderr and "Traceback" not in done.stderr


def test_conda_environment_names_the_locked_versions_and_the_package():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    items = pip_section(env)
    assert items[-1] == "-e .[workflow,test,hf]"
    pinned = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in items[:-1]}
    assert pinned == lock_versions()


def def_sections(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """An Apptainer definition file: its header keywords and its %sections' lines."""
    header, sections, current = {}, {}, None
    for line in text.splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            assert current not in sections, f"%{current} twice"
            sections[current] = []
        elif current is None:
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition(":")
                header[key.strip()] = value.strip()
        else:
            sections[current].append(line)
    return header, sections


def test_apptainer_definition_parses_and_installs_exactly_the_lock():
    header, sections = def_sections((REPO / "containers" / "weightselect.def").read_text())
    python, pins = render.read_lock()
    assert header == {"Bootstrap": "docker", "From": f"python:{python}-slim-bookworm"}
    assert {"labels", "files", "post", "environment", "runscript", "test"} <= set(sections)
    post = sections["post"]
    start, end = post.index("cat > /opt/weightselect/requirements.lock <<'LOCK'"), post.index("LOCK")
    assert post[start + 1:end] == pins
    assert "python -m pip install --no-cache-dir --no-deps -r /opt/weightselect/requirements.lock" in post
    assert "python -m pip check" in post
    labels = dict(line.split(None, 1) for line in sections["labels"] if line.strip())
    locked = lock_versions()
    for name in ("torch", "torchvision", "timm", "snakemake"):
        assert labels[f"{name}.version"] == locked[name]
    for line in sections["files"]:
        if line.strip():
            source = line.split()[0]
            assert (REPO / source).exists(), f"%files names {source}, which the repository lacks"


# ------------------------------------------------------------------------------ quiet install
def test_editable_install_prints_no_warning(tmp_path):
    """`pip install -e .` as a user types it (build isolation: the newest setuptools from the index)
    says only pip's own lines: no licence-table deprecation, no editable-install warning."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-e", str(REPO)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    # pip's own notes about this machine's index configuration are not the package's
    lines = [line for line in output.splitlines() if not line.startswith("WARNING: Location 'file:")]
    noisy = [line for line in lines if re.search(r"warning|deprecat|!!", line, re.IGNORECASE)]
    assert not noisy, "\n".join(lines)
    assert "Successfully installed weightselect-" in output


# ------------------------------------------------------------------------------ rule env, built
@pytest.mark.slow
def test_rule_environment_builds_and_runs_a_ci_job(tmp_path):
    """What `--sdm conda` does, less conda itself (no channel is reachable here): the `pip:` lines of
    envs/weightselect.yaml installed into a fresh environment the way conda does (a requirements file
    in the folder of the environment file's copy, `pip install -U -r`), then the post-deploy script
    run from the repository root, then the `ci` study's selection jobs with that environment's
    Snakemake, from another folder and with no PYTHONPATH."""
    env_file = yaml.safe_load((REPO / "envs" / "weightselect.yaml").read_text())
    prefix = tmp_path / "conda"  # stands for .snakemake/conda, where Snakemake copies the env file
    prefix.mkdir()
    (prefix / "condaenv.requirements.txt").write_text("\n".join(pip_section(env_file)) + "\n")
    venv = prefix / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WEIGHTSELECT_SOURCE")}
    clean.update(PATH=f"{venv / 'bin'}{os.pathsep}{clean['PATH']}", CONDA_PREFIX=str(venv))

    def run(args, cwd, timeout=1800):
        done = subprocess.run(args, cwd=cwd, env=clean, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        return done

    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-U", "-r", "condaenv.requirements.txt"], cwd=prefix)
    run(["bash", str(REPO / "envs" / "weightselect.post-deploy.sh")], cwd=REPO)

    outside = tmp_path / "work"
    outside.mkdir()
    found = run([str(venv / "bin" / "python"), "-c", "import weightselect; print(weightselect.__file__)"], cwd=outside)
    assert Path(found.stdout.strip()) == REPO / "weightselect" / "__init__.py"
    freeze = run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all", "--exclude-editable"], cwd=outside)
    installed = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in freeze.stdout.split()}
    assert installed == rule_env_versions()

    done = run([str(venv / "bin" / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(outside),
                "--cores", "2", "--config", "study=ci", "--until", "select_weights"], cwd=outside)
    inits = sorted(p for p in (outside / "results").rglob("*.safetensors") if "inits" in p.parts)
    assert inits, done.stdout[-2000:] + done.stderr[-3000:]
    from safetensors.torch import load_file

    for path in inits:
        tensors = load_file(path)
        assert tensors and all(t.numel() > 0 for t in tensors.values())
