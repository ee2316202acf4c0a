"""Self-supervised pretraining objectives (Table 5's teachers): losses against hand-written
formulas, label-free backbones, the exported weights and recipe errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from weightselect.io import load_state_dict
from weightselect.models import create_model
from weightselect.training import train
from weightselect.training.recipe import RecipeError, resolve_recipe
from weightselect.training.ssl import SelfSupervised, clip_loss, masked_patch_loss, nt_xent, patchify


def test_patchify_follows_timms_patch_order():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 48)
    for i in range(2):
        for j in range(2):
            block = x[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4]  # (B, C, p, p) -> (p, p, C) flattened
            assert torch.equal(p[:, 2 * i + j], block.permute(0, 2, 3, 1).reshape(2, 48))
    # timm's PatchEmbed with a kernel that reads pixel (r, c) of channel ch gives the same order
    from timm.layers import PatchEmbed

    embed = PatchEmbed(img_size=8, patch_size=4, in_chans=3, embed_dim=1)
    with torch.no_grad():
        embed.proj.weight.zero_()
        embed.proj.bias.zero_()
        embed.proj.weight[0, 2, 1, 3] = 1.0  # channel 2, row 1, column 3 of each patch
    tokens = embed(x)[..., 0]
    assert torch.equal(tokens, p[..., (1 * 4 + 3) * 3 + 2])


def test_masked_patch_loss_counts_masked_patches_only():
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0 + 1e-3]]])
    mask = torch.tensor([[True, False]])
    pred = torch.tensor([[[0.0, 0.0], [100.0, -100.0]]])
    # patch 0 normalized: mean 2, var (unbiased) 2 -> (-1/sqrt2, 1/sqrt2) ; squared error mean = 0.5
    assert masked_patch_loss(pred, target, mask).item() == pytest.approx(0.5, rel=1e-5)
    pred2 = pred.clone()
    pred2[0, 1] = 0.0  # an unmasked patch's prediction does not count
    assert masked_patch_loss(pred2, target, mask).item() == pytest.approx(0.5, rel=1e-5)


def test_nt_xent_is_simclrs_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    tau, n, total = 0.5, 3, 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / (2 * n), rel=1e-5)


def test_clip_loss_is_the_symmetric_infonce():
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    scale = torch.tensor(math.log(10.0))
    sim = 10.0 * F.normalize(img, dim=1) @ F.normalize(txt, dim=1).t()
    rows = -sum(math.log(math.exp(sim[i, i]) / float(sim[i].exp().sum())) for i in range(4)) / 4
    cols = -sum(math.log(math.exp(sim[i, i]) / float(sim[:, i].exp().sum())) for i in range(4)) / 4
    assert clip_loss(img, txt, scale).item() == pytest.approx((rows + cols) / 2, rel=1e-5)


def _backbone_grads(net, x, y, seed):
    net.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    net(x, y).backward()
    return {n: p.grad.clone() for n, p in net.student.named_parameters()
            if p.grad is not None and not n.startswith("head.")}


@pytest.mark.parametrize("objective", ["masked", "contrastive"])
def test_label_free_objectives_train_the_backbone_without_the_labels(tiny_vit, objective):
    torch.manual_seed(0)
    model = create_model(tiny_vit, num_classes=5, in_chans=1)
    net = SelfSupervised(model, objective)
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    a, b = _backbone_grads(net, x, y, 7), _backbone_grads(net, x, y.flip(0), 7)
    assert a.keys() == b.keys() and "blocks.0.attn.qkv.weight" in a
    assert all(torch.equal(a[k], b[k]) for k in a)  # the labels reach the probe head only
    probe = net.probe.weight.grad.clone()
    _backbone_grads(net, x, y, 7)
    assert not torch.equal(probe, net.probe.weight.grad)  # ... which they do train


def test_the_probe_folded_into_the_classifier_computes_the_probes_logits(tiny_vit):
    torch.manual_seed(0)
    model = create_model(tiny_vit, num_classes=5, in_chans=1)
    net = SelfSupervised(model, "contrastive")
    net.train()
    for _ in range(3):  # running statistics away from (0, 1)
        net(torch.randn(8, 1, 16, 16) * 3 + 1, torch.randint(0, 5, (8,)))
    net.sync_classifier()
    net.eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        mu, var = net.probe_norm.running_mean, net.probe_norm.running_var
        by_hand = ((pooled - mu) / (var + net.probe_norm.eps).sqrt()) @ net.probe.weight.t() + net.probe.bias
        assert torch.allclose(model(x), by_hand, atol=1e-5)


def test_masked_objective_masks_the_stated_share(tiny_vit, monkeypatch):
    model = create_model(tiny_vit, num_classes=5, in_chans=1)
    net = SelfSupervised(model, "masked", mask_ratio=0.75)
    seen = {}
    real = masked_patch_loss

    def spy(pred, target, mask):
        seen["mask"] = mask
        return real(pred, target, mask)

    monkeypatch.setattr("weightselect.training.ssl.masked_patch_loss", spy)
    net(torch.randn(3, 1, 16, 16), torch.zeros(3, dtype=torch.long))
    assert seen["mask"].shape == (3, 16) and seen["mask"].sum(1).tolist() == [12, 12, 12]


def test_image_text_captions_and_refusals(tiny_vit, tiny_convnext):
    model = create_model(tiny_vit, num_classes=3, in_chans=1)
    with pytest.raises(ValueError, match="captions"):
        SelfSupervised(model, "image_text")
    net = SelfSupervised(model, "image_text", captions=["A", "B", "C"])
    assert net.text(torch.tensor([0, 1, 0])).shape == (3, 64)
    with pytest.raises(ValueError, match="not one: use objective supervised"):
        SelfSupervised(create_model(tiny_convnext, num_classes=3, in_chans=1), "masked")
    with pytest.raises(ValueError, match="unknown self-supervised objective"):
        SelfSupervised(model, "jigsaw")


def test_recipe_refuses_labels_mixed_into_a_label_free_objective():
    with pytest.raises(RecipeError, match="takes no mixup.*set mixup 0"):
        resolve_recipe("vit_tiny_patch16_224", "letters", {"objective": "masked", "mixup": 0.8})
    with pytest.raises(RecipeError, match="objective"):
        resolve_recipe("vit_tiny_patch16_224", "letters", {"objective": "rotation"})


@pytest.mark.parametrize("objective", ["masked", "contrastive", "image_text"])
def test_pretraining_by_an_objective_exports_the_plain_model(tmp_path, tiny_vit, fast_recipe, objective):
    recipe = {**fast_recipe, "epochs": 1, "warmup_epochs": 0, "train_samples": 64, "batch_size": 32,
              "objective": objective}
    final = train(tiny_vit, "letters", tmp_path / "run", recipe=recipe, data_root=tmp_path / "data",
                  progress=False)
    assert final["epochs"] == 1 and math.isfinite(final["final_top1"])
    weights = load_state_dict(tmp_path / "run" / "model.safetensors")
    expected = create_model(tiny_vit, num_classes=26, in_chans=1).state_dict()
    assert set(weights) == set(expected)  # no mask token, decoder, projector or text tower
    assert all(weights[k].shape == expected[k].shape for k in expected)
