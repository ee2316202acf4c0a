import math
import struct

import numpy as np
import pytest

from weightselect.results.figures import DPI, FIGSIZE, plot_curves, plot_summary
from weightselect.results.runs import collect_curves, collect_runs
from weightselect.results.tables import table2

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_curves_one_line_per_variant(tmp_path, runs_root):
    out = tmp_path / "figs" / "curves.png"
    ax = plot_curves(collect_curves(runs_root), "demo_vit", "cifar100", out)
    assert png_size(out) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]
    lines = ax.get_lines()
    assert len(lines) == 2
    random, ws = lines
    assert random.get_label() == "random init (timm default) (3 seeds)"
    assert ws.get_label() == "weight selection (uniform) (3 seeds)"  # seed 2 still running: its curve counts
    assert random.get_linestyle() == "--" and ws.get_linestyle() == "-"
    assert random.get_color() != ws.get_color()
    np.testing.assert_allclose(random.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(random.get_ydata(), [52.0, 62.0, 72.0])
    # ws epoch 1: seeds 72, 73 and the running seed's 70
    np.testing.assert_allclose(ws.get_ydata(), [(72 + 73 + 70) / 3, 76.5, 80.5])
    assert len(ax.collections) == 2  # a seed band per variant
    assert ax.get_title() == "demo_vit on cifar100"
    assert ax.get_xlabel() == "epoch" and "top-1" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [random.get_label(), ws.get_label()]


def test_plot_curves_band_bounds(runs_root):
    curves = collect_curves(runs_root)
    ax = plot_curves(curves, "demo_vit", "cifar100", variants=["random"], band="minmax")
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(50.0) and band[:, 1].max() == pytest.approx(74.0)
    ax = plot_curves(curves, "demo_vit", "cifar100", variants=["random"], band="std")
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(50.0) and band[:, 1].max() == pytest.approx(74.0)  # mean +- 2


def test_plot_curves_single_seed_has_no_band_and_paper_lines(runs_root):
    ax = plot_curves(collect_curves(runs_root), "demo_vit", "pets", paper_model="vit_t")
    assert len(ax.collections) == 0
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["random init (timm default) (1 seed)", "paper: random init (timm default) (25.0)"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [25.0, 25.0])


def test_plot_curves_errors(runs_root):
    curves = collect_curves(runs_root)
    with pytest.raises(ValueError, match="no curves for student 'demo_vit' on 'dtd'"):
        plot_curves(curves, "demo_vit", "dtd")
    with pytest.raises(ValueError, match=r"no curves for variants \['xavier'\]"):
        plot_curves(curves, "demo_vit", "cifar100", variants=["xavier"])
    with pytest.raises(ValueError, match="should end in .png"):
        plot_curves(curves, "demo_vit", "cifar100", "fig.pdf")


def test_plot_summary_bars_ours_and_paper(tmp_path, runs_root):
    table = table2(collect_runs(runs_root), "demo_vit", paper_model="vit_t")
    out = tmp_path / "summary.png"
    ax = plot_summary(table, out)
    assert png_size(out) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    heights = [round(p.get_height(), 3) for p in ax.patches]
    # datasets cifar100, pets; per variant ours then paper; a missing mean is an empty (NaN) bar
    assert heights[:4] == [72.0, 25.5, 72.3, 25.0]
    assert heights[4] == 80.5 and np.isnan(heights[5]) and heights[6:] == [81.4, 68.6]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cifar100", "pets"]


def test_attention_maps_give_timm_attention_logits_of_the_first_head():
    """x W_q W_k^T x^T equals timm's q k^T of head 0 (no qkv bias); x W_v W_proj its value path."""
    import timm
    import torch

    from weightselect.results.figures import attention_maps

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=4,
                            qkv_bias=False, num_classes=0)
    attn = net.blocks[0].attn
    x = torch.randn(5, 32)
    qk, vproj = attention_maps(net.state_dict(), num_heads=4)
    q, k, v = attn.qkv(x).reshape(5, 3, 4, 8).permute(1, 2, 0, 3)  # (3, heads, tokens, head_dim)
    assert torch.allclose(x @ torch.from_numpy(qk) @ x.T, q[0] @ k[0].T, atol=1e-5)
    # head 0's share of the projection output: its values through the head's columns of proj
    head0 = v[0] @ attn.proj.weight[:, :8].T
    assert torch.allclose(x @ torch.from_numpy(vproj), head0, atol=1e-5)
    assert qk.shape == vproj.shape == (32, 32)


def test_crossing_interpolates_the_first_budget_reaching_a_level():
    from weightselect.results.figures import crossing

    assert crossing([10, 30, 100], [50.0, 60.0, 80.0], 70.0) == pytest.approx(65.0)
    assert crossing([10, 30], [75.0, 80.0], 70.0) == 10.0
    assert math.isnan(crossing([10, 30], [50.0, 60.0], 70.0))


def test_compute_ratio_is_the_papers_definition():
    from weightselect.results.figures import compute_ratio

    # paper section 4.5: 60 ImageNet-1K epochs of 1,281,167 images, then 300 CIFAR-100 epochs of 50,000
    assert compute_ratio(60, 1_281_167, 300, 50_000) == pytest.approx((60 * 1_281_167 + 15_000_000) / 15_000_000)
    assert round(compute_ratio(60, 1_281_167, 300, 50_000), 2) == 6.12
    assert math.isnan(compute_ratio(math.nan, 1_281_167, 300, 50_000))


def test_pretraining_figure_prints_and_writes_the_compute_ratio(tmp_path):
    import json

    from weightselect.results.figures import plot_pretraining_sweep

    def run(variant, seed, top1):
        folder = tmp_path / "runs" / "vit_t" / "cifar100" / variant / f"seed{seed}"
        folder.mkdir(parents=True)
        final = {"final_top1": top1, "best_top1": top1, "final_top5": 99.0, "best_epoch": 3, "epochs": 3}
        (folder / "final.json").write_text(json.dumps(final))
        (folder / "run.json").write_text(json.dumps({"dataset": {"train_images": 500}}))
        return str(folder / "final.json")

    finals = [run("pre10", 0, 40.0), run("pre30", 0, 60.0), run("ws_uniform", 0, 50.0), run("random", 0, 20.0)]
    teacher = tmp_path / "teacher.json"
    teacher.write_text(json.dumps({"train_images": 2000}))
    spec = {"student": "vit_t", "dataset": "cifar100", "sweep": {"pre10": 10, "pre30": 30},
            "reference": "ws_uniform", "baseline": "random", "pretrain": {"dataset": "letters"}}
    ax = plot_pretraining_sweep(spec, finals, tmp_path / "fig4b.png", teachers=[teacher])
    summary = json.loads((tmp_path / "fig4b.json").read_text())
    # 50 % is reached half-way from 10 to 30 epochs: 20 epochs x 2,000 images + 3 x 500, over 3 x 500
    assert summary["pretrain_epochs_to_match"] == pytest.approx(20.0)
    assert summary["compute_ratio"] == pytest.approx((20 * 2000 + 1500) / 1500)
    assert "27.67x" in ax.get_title() and png_size(tmp_path / "fig4b.png")[0] > 0


def test_figure5_names_student_block_head_and_sizes_and_has_a_colour_scale_per_panel(tmp_path):
    import timm
    from safetensors.torch import save_file

    from weightselect.results.figures import plot_attention_maps

    student = {"name": "vit_tiny_patch16_224", "kwargs": dict(img_size=16, patch_size=4, embed_dim=32, depth=1,
                                                                num_heads=2, num_classes=0)}
    teacher = {"name": "vit_tiny_patch16_224", "kwargs": dict(img_size=16, patch_size=4, embed_dim=64, depth=1,
                                                                num_heads=2, num_classes=0)}
    for name, model in (("teacher", teacher), ("init", student)):
        net = timm.create_model(model["name"], **model["kwargs"])
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"{name}.safetensors"))
    spec = {"student": "vit_w32", "teacher": "vit_w64", "student_model": student, "teacher_model": teacher, "head": 1}
    fig = plot_attention_maps(spec, tmp_path / "teacher.safetensors", tmp_path / "init.safetensors", tmp_path / "f.png")
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(images) == 6 and len(bars) == 6  # each panel has its own colour scale
    assert all(ax.images[0].colorbar is not None for ax in images)
    # a colour scale symmetric about 0 spanning the panel's largest magnitude
    lo, hi = images[0].images[0].get_clim()
    assert lo == -hi and hi == pytest.approx(float(np.abs(images[0].images[0].get_array()).max()))
    titles = [ax.get_title() for ax in images]  # column by column: W_q W_k^T, then W_v W_proj
    assert titles[0] == "random init\n$W_q W_k^T$ (32 x 32)" and titles[2] == "teacher vit_w64\n$W_q W_k^T$ (64 x 64)"
    assert titles[5] == "weight selection\n$W_v W_{proj}$ (32 x 32)"
    assert fig._suptitle.get_text() == "vit_w32, block 0, head 1: $W_q W_k^T$ and $W_v W_{proj}$"
    assert (tmp_path / "f.png").stat().st_size > 10_000
