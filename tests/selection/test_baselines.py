import math

import pytest
import timm
import torch

from selection_helpers import SMALL_VIT
from weightselect.selection import BASELINES, apply_baseline


def _vit(**kw):
    return timm.create_model("vit_tiny_patch16_224", **SMALL_VIT, **kw)


def test_baselines_set():
    assert set(BASELINES) == {"random", "xavier", "kaiming", "mimetic"}


def test_unknown_baseline_is_an_error():
    with pytest.raises(ValueError, match="xavier"):
        apply_baseline(_vit(), "lecun", 0)


@pytest.mark.parametrize("name", BASELINES)
def test_seeded_and_deterministic(name):
    a, b, c = _vit(depth=2), _vit(depth=2), _vit(depth=2)
    apply_baseline(a, name, 1)
    apply_baseline(b, name, 1)
    apply_baseline(c, name, 2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.mlp.fc1.weight"], sc["blocks.0.mlp.fc1.weight"])


def test_random_is_timm_default_trunc_normal():
    m = _vit()
    apply_baseline(m, "random", 0)
    w = m.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert abs(w.mean().item()) < 0.001
    assert torch.equal(m.blocks[0].mlp.fc1.bias, torch.zeros_like(m.blocks[0].mlp.fc1.bias))
    assert torch.equal(m.norm.weight, torch.ones_like(m.norm.weight))


def test_random_on_convnext_without_init_weights():
    m = timm.create_model("convnext_femto")
    apply_baseline(m, "random", 0)
    w = m.stages[2].blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.002


def test_xavier_std():
    m = _vit()
    apply_baseline(m, "xavier", 0)
    w = m.blocks[3].mlp.fc1.weight  # (768, 192)
    expected = math.sqrt(2.0 / (192 + 768))
    assert abs(w.std().item() / expected - 1) < 0.03
    bound = math.sqrt(6.0 / (192 + 768))
    assert w.abs().max().item() <= bound + 1e-6
    assert torch.count_nonzero(m.blocks[3].mlp.fc1.bias) == 0


def test_kaiming_std():
    m = _vit()
    apply_baseline(m, "kaiming", 0)
    w = m.blocks[3].mlp.fc2.weight  # (192, 768): fan_in 768
    assert abs(w.std().item() / math.sqrt(2.0 / 768) - 1) < 0.03
    conv = m.patch_embed.proj.weight  # fan_in 3 * 16 * 16
    assert abs(conv.std().item() / math.sqrt(2.0 / (3 * 256)) - 1) < 0.05


def test_mimetic_attention_structure():
    m = _vit(depth=2)
    info = apply_baseline(m, "mimetic", 0)
    assert info["attention_blocks"] == 2
    attn = m.blocks[0].attn
    d, hd = 192, attn.head_dim
    w = attn.qkv.weight
    eye = torch.eye(d, dtype=torch.bool)
    for h in range(attn.num_heads):
        q, k = w[h * hd:(h + 1) * hd], w[d + h * hd:d + (h + 1) * hd]
        qk = q.T @ k  # (d, d): the head's W_q^T W_k
        assert qk[eye].mean() > 0.15 and qk[~eye].abs().mean() < 0.05
    # W_v W_proj of the whole layer (all heads together) is a2 Z - b2 I: diagonal -0.4 (Trockman &
    # Kolter 2023, section 3), not a sum of per-head rank-hd approximations (about -0.68 for ViT-T)
    vo = attn.proj.weight @ w[2 * d:]  # timm layout: W_proj (d, d) @ W_v (d, d)
    assert abs(vo[eye].mean().item() + 0.4) < 0.02
    off = vo[~eye]
    assert abs(off.mean().item()) < 0.005 and abs(off.std().item() - 0.4 / math.sqrt(d)) < 0.005
    # a random init has no such diagonal
    r = _vit()
    apply_baseline(r, "random", 0)
    qk = r.blocks[0].attn.qkv.weight[:hd].T @ r.blocks[0].attn.qkv.weight[d:d + hd]
    assert abs(qk[eye].mean().item()) < 0.01


def test_mimetic_needs_attention():
    with pytest.raises(ValueError, match="self-attention"):
        apply_baseline(timm.create_model("resnet18"), "mimetic", 0)


def test_global_rng_is_left_alone():
    model = _vit(depth=1)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    apply_baseline(model, "xavier", 7)
    assert torch.equal(torch.rand(3), expected)
