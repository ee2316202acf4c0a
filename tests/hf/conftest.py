"""Fixtures: tiny transformers teachers with random weights, saved as save_pretrained folders
(no downloads). The folder is skipped when transformers (the 'hf' extra) is not installed."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from hf_helpers import LLAMA, save_teacher  # noqa: E402


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """Llama teacher: 4 layers, hidden 32, 8 heads in 2 KV groups, head_dim 8, tied embeddings."""
    return save_teacher("llama", LLAMA, tmp_path_factory.mktemp("llama") / "teacher")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
