"""Memory and FLOPs budgets (timm ViT and ConvNeXt): the chosen student's FLOPs, counted here by
torch.utils.flop_counter.FlopCounterMode on a real forward (attention unfused, so its matmuls are
counted as plain ops), and its weights' bytes, numel x element_size of the real model at the dtype,
are within the budget; the next wider student is over it; the shapes are valid timm models."""
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from selection_helpers import SMALL_VIT, model
from test_activation_cli import cached_atto  # noqa: F401 (a fixture: convnext_atto in an offline hub cache)
from weightselect.cli import main
from weightselect.io import load_init
from weightselect.selection import select
from weightselect.selection.budget import parse_amount, timm_budget_student


def _real_flops(name, kwargs, size):
    net = timm.create_model(name, **kwargs).eval()
    for block in getattr(net, "blocks", []):
        block.attn.fused_attn = False  # q @ k^T and attn @ v as matmuls FlopCounterMode sees on CPU
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, *size))
    return counter.get_total_flops()


def _real_bytes(name, kwargs, dtype):
    net = timm.create_model(name, **kwargs).to(dtype)
    return sum(p.numel() * p.element_size() for p in net.parameters())


def test_amounts_parse_with_si_and_binary_prefixes():
    assert parse_amount("20MB", "--target-memory") == 20_000_000
    assert parse_amount("1.5GiB", "--target-memory") == 1_610_612_736
    assert parse_amount("2.1G", "--target-flops") == 2_100_000_000
    assert parse_amount("300 MFLOPs", "--target-flops") == 300_000_000
    assert parse_amount(1234, "--target-memory") == 1234
    with pytest.raises(ValueError, match="--target-memory '20 parsecs': give a number"):
        parse_amount("20 parsecs", "--target-memory")


def test_vit_flops_budget_is_the_widest_within_at_full_depth():
    kwargs = {"img_size": 32, "num_classes": 10}
    choice = timm_budget_student("vit_small_patch16_224", "100M", kwargs, kind="flops")
    kw = choice.student["kwargs"]
    assert kw["depth"] == 12 and kw["embed_dim"] == 64 * kw["num_heads"] and 1 <= kw["num_heads"] < 6
    real = _real_flops("vit_small_patch16_224", kw, (3, 32, 32))
    assert choice.amount == real <= 100_000_000
    wider = dict(kw, embed_dim=kw["embed_dim"] + 64, num_heads=kw["num_heads"] + 1)
    assert _real_flops("vit_small_patch16_224", wider, (3, 32, 32)) > 100_000_000
    assert "FLOPs" in choice.rationale and "3x32x32" in choice.rationale and "\n" not in choice.rationale
    assert choice.as_dict()["input_size"] == [3, 32, 32]


def test_convnext_flops_budget_scales_every_stage_and_selects():
    teacher = model("convnext_atto")  # dims (40, 80, 160, 320), depths (2, 2, 6, 2)
    result = select(teacher, target_flops="0.4G", student_kwargs={"num_classes": 10})
    kw, budget = result.manifest["student"]["kwargs"], result.manifest["budget"]
    dims = tuple(kw["dims"])
    assert tuple(kw["depths"]) == (2, 2, 6, 2) and dims == (dims[0], 2 * dims[0], 4 * dims[0], 8 * dims[0])
    assert dims[0] % 8 == 0 and dims[0] < 40
    assert budget["kind"] == "flops" and budget["amount"] == _real_flops("convnext_atto", kw, (3, 224, 224))
    assert budget["amount"] <= 400_000_000
    wider = tuple(d + d // dims[0] * 8 for d in dims)
    assert _real_flops("convnext_atto", dict(kw, dims=wider), (3, 224, 224)) > 400_000_000
    student = timm.create_model("convnext_atto", **kw)
    res = student.load_state_dict(result.state_dict, strict=False)
    assert not res.unexpected_keys and set(res.missing_keys) == {"head.fc.weight", "head.fc.bias"}


@pytest.mark.parametrize("dtype, torch_dtype", [("bfloat16", torch.bfloat16), ("student", torch.float32)])
def test_vit_memory_budget_counts_bytes_at_the_dtype(dtype, torch_dtype):
    teacher = model("vit_small_patch16_224", **SMALL_VIT)
    result = select(teacher, target_memory="20MB", dtype=dtype, student_kwargs=dict(SMALL_VIT))
    kw, budget = result.manifest["student"]["kwargs"], result.manifest["budget"]
    real = _real_bytes("vit_small_patch16_224", kw, torch_dtype)
    assert budget["amount"] == real <= 20_000_000 and kw["depth"] == 12
    assert sum(t.numel() * t.element_size() for t in result.state_dict.values()) == real  # as written
    wider = dict(kw, embed_dim=kw["embed_dim"] + 64, num_heads=kw["num_heads"] + 1)
    assert _real_bytes("vit_small_patch16_224", wider, torch_dtype) > 20_000_000


def test_convnext_memory_budget_in_half_precision():
    choice = timm_budget_student("convnext_atto", "4MB", {"num_classes": 10}, kind="memory", dtype="float16")
    kw = choice.student["kwargs"]
    real = _real_bytes("convnext_atto", kw, torch.float16)
    assert choice.amount == real <= 4_000_000 and choice.params * 2 == real
    dims = tuple(kw["dims"])
    wider = tuple(d + d // dims[0] * 8 for d in dims)
    assert _real_bytes("convnext_atto", dict(kw, dims=wider), torch.float16) > 4_000_000
    assert "bytes at float16" in choice.rationale


def test_budget_refusals_are_one_line_with_the_fix(tmp_path, capsys):
    out = str(tmp_path / "s.safetensors")
    assert main(["select", "--teacher", "vit_small_patch16_224", "--target-params", "10", "--target-flops", "1G",
                 "-o", out]) == 2
    assert "give one budget, not --target-params and --target-flops" in capsys.readouterr().err
    assert main(["select", "--teacher", "vit_small_patch16_224", "--target-memory", "lots", "-o", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target-memory 'lots': give a number" in err[0]
    with pytest.raises(ValueError, match="give --dtype float32, float16 or bfloat16"):
        select("vit_small_patch16_224", target_memory="5MB", dtype="teacher")
    with pytest.raises(ValueError, match="smallest candidate .* raise the budget \\(--target-flops\\)"):
        timm_budget_student("vit_small_patch16_224", 1000, {"num_classes": 10}, kind="flops")
    with pytest.raises(ValueError, match="nothing to select; give a smaller --target-memory"):
        timm_budget_student("vit_small_patch16_224", "1GB", kind="memory")


def test_cli_memory_budget_writes_that_many_bytes(cached_atto, tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    rc = main(["select", "--teacher", cached_atto, "--target-memory", "3MB", "--dtype", "bfloat16",
               "--student-kwargs", '{"num_classes": 10}', "-o", str(out)])
    assert rc == 0 and capsys.readouterr().out.startswith("budget: dims (")
    sd, manifest = load_init(out)
    assert {t.dtype for t in sd.values() if t.is_floating_point()} == {torch.bfloat16}
    real = _real_bytes("convnext_atto", manifest["student"]["kwargs"], torch.bfloat16)
    assert manifest["budget"]["amount"] == real <= 3_000_000 and manifest["budget"]["dtype"] == "bfloat16"
