"""Shared test settings: two threads (the CI machine has two cores), no network for weights."""
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# File digests remembered by the tests stay out of the user's cache (weightselect.io.hash_cache_dir).
os.environ.setdefault("WEIGHTSELECT_CACHE_DIR", tempfile.mkdtemp(prefix="weightselect-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402


@pytest.fixture
def no_network(monkeypatch):
    """A machine without network for huggingface_hub: online mode (HF_HUB_OFFLINE unset) but no host
    name resolves, as where DNS is unreachable."""
    import socket

    from huggingface_hub import constants

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="session")
def load_benchmark():
    """Import a script of benchmarks/ as a module (they are scripts, not a package)."""
    return _load_benchmark


def _load_benchmark(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
