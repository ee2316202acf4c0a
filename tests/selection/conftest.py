"""Fixtures: timm models with random weights (no downloads), built once per session."""
from __future__ import annotations

import pytest
import torch
from selection_helpers import SMALL_VIT, model


@pytest.fixture(scope="session")
def vit_small():
    return model("vit_small_patch16_224", **SMALL_VIT)


@pytest.fixture(scope="session")
def vit_tiny_spec():
    return {"name": "vit_tiny_patch16_224", "kwargs": dict(SMALL_VIT)}


@pytest.fixture(autouse=True)
def _one_thread():
    """Selection tests use small tensors: one thread avoids waiting on a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
