"""The LM study's steps on a tiny corpus written by the test (a few training steps each), for each
teacher family (Llama, Qwen3), and the workflow's `lm` config and jobs for both."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_helpers import load_strict

from weightselect.hf import lm_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stdlib")
    for i in range(60):  # enough files that every split gets some
        (root / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x * {i} + {i % 7}\n" * 20)
    cfg = lm_study.LMStudyConfig(
        teacher=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=4),
        seq_len=16, batch_size=2, teacher_steps=3, student_steps=2, eval_every=1, eval_batches=1, seeds=(0,))
    return root, cfg


@pytest.fixture(scope="module")
def studied(tiny, tmp_path_factory):
    """Both families through the chain: teacher, the three inits (uniform selection, activation-ranked
    selection, random), one student each."""
    root, cfg = tiny
    corpus, out = lm_study.load_corpus(cfg, root), tmp_path_factory.mktemp("study")
    teachers, inits, logs = {}, {}, []
    for family in lm_study.FAMILIES:
        teachers[family] = lm_study.pretrain_teacher(cfg, corpus, out / family / "teacher", family)
        for init in lm_study.INITS:
            inits[family, init] = lm_study.make_init(teachers[family], cfg, init, 0, out / family / init, corpus)
            run = out / family / f"{init}.json"
            logs.append(lm_study.train_student(inits[family, init], corpus, cfg, 0, run, init))
    return corpus, teachers, inits, logs


def test_corpus_splits_by_file_and_caps(tiny):
    root, cfg = tiny
    corpus = lm_study.load_corpus(cfg, root)
    assert set(corpus) == {"teacher", "student", "val"} and all(len(v) > 0 for v in corpus.values())
    total = sum(len(p.read_bytes()) for p in root.glob("*.py"))
    assert sum(len(v) for v in corpus.values()) == total and int(corpus["val"].max()) < 256
    capped = lm_study.LMStudyConfig(max_bytes=dict(teacher=100, student=100, val=100))
    assert [len(v) for v in lm_study.load_corpus(capped, root).values()] == [100, 100, 100]
    with pytest.raises(FileNotFoundError, match="no .py files"):
        lm_study.load_corpus(cfg, root / "absent")


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_each_family_goes_through_the_chain(studied, family):
    _, teachers, inits, logs = studied
    teacher = load_strict(teachers[family])
    assert teacher.config.model_type == family and teacher.config.tie_word_embeddings
    assert json.loads((teachers[family] / "train.json").read_text())["params"] == teacher.num_parameters()
    s_sel, s_rnd = load_strict(inits[family, "selection"]), load_strict(inits[family, "random"])
    assert s_sel.config.model_type == s_rnd.config.model_type == family
    assert s_sel.config.hidden_size == s_rnd.config.hidden_size == 8
    emb = teacher.model.embed_tokens.weight.detach()[:, torch.arange(8) * 2]
    assert torch.equal(s_sel.model.embed_tokens.weight.detach(), emb)
    assert not torch.equal(s_rnd.model.embed_tokens.weight.detach(), emb)
    runs = [r for r in logs if r["family"] == family]
    assert [r["init"] for r in runs] == ["selection", "activation", "random"]
    assert [len(r["curve"]) for r in runs] == [3, 3, 3] and all(r["val_ppl"] > 1 for r in runs)


def test_qwen3_students_keep_the_teachers_q_norm_and_k_norm(studied):
    """head_dim is kept, so each layer's per-head q_norm/k_norm weights are the teacher's, whole."""
    _, teachers, inits, _ = studied
    teacher, student = load_strict(teachers["qwen3"]), load_strict(inits["qwen3", "selection"])
    for t_layer, s_layer in zip(teacher.model.layers, student.model.layers):
        for norm in ("q_norm", "k_norm"):
            t_w, s_w = getattr(t_layer.self_attn, norm).weight, getattr(s_layer.self_attn, norm).weight
            assert s_w.shape == (4,) and torch.equal(s_w, t_w)
    assert student.generate(torch.tensor([[35, 100, 101]]), max_new_tokens=2, do_sample=False).shape == (1, 5)


def _windows_of(text: torch.Tensor, windows: torch.Tensor) -> bool:
    """Whether every row of ``windows`` occurs in ``text`` at some offset."""
    raw = bytes(text.tolist())
    return all(bytes(w.tolist()) in raw for w in windows)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_activation_init_ranks_on_the_students_text(tiny, studied, family):
    """The activation student's KV groups and MLP units are the teacher's of largest mean |input|
    to o_proj and down_proj (this test's own hooks) over windows of the students' training text,
    seeded, none of them from the validation text; its weights are those rows of the teacher."""
    _, cfg = tiny
    corpus, teachers, inits, _ = studied
    windows = lm_study.calibration_windows(corpus, cfg, 0)
    assert windows.data.shape == (cfg.calibration_samples, cfg.seq_len)
    assert _windows_of(corpus["student"], windows.data) and not _windows_of(corpus["val"], windows.data[:1])
    assert torch.equal(lm_study.calibration_windows(corpus, cfg, 0).data, windows.data)
    assert not torch.equal(lm_study.calibration_windows(corpus, cfg, 1).data, windows.data)
    teacher, student = load_strict(teachers[family]), load_strict(inits[family, "activation"])
    means, handles = {}, []
    for i, layer in enumerate(teacher.model.layers):
        for name, module in (("o", layer.self_attn.o_proj), ("down", layer.mlp.down_proj)):
            def hook(m, args, key=(i, name)):
                x = args[0].detach().abs().double().reshape(-1, args[0].shape[-1])
                means[key] = means.get(key, 0) + x.sum(0)
            handles.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        teacher(input_ids=windows.data, use_cache=False)
    for h in handles:
        h.remove()
    manifest = json.loads((inits[family, "activation"] / "weightselect.json").read_text())
    assert manifest["method"] == "activation" and manifest["calibration"]["samples"] == cfg.calibration_samples
    hidden = torch.tensor(manifest["axes"]["hidden"]["indices"])
    for i, (t_layer, s_layer) in enumerate(zip(teacher.model.layers, student.model.layers)):
        group = int(means[i, "o"].reshape(2, 2, 4).mean(dim=(1, 2)).argmax())  # 2 KV groups of 2 heads of 4
        # the kept MLP units are the 16 of largest mean |input| to down_proj (up to float32 rounding)
        score, mlp = means[i, "down"], torch.tensor(manifest["axes"][f"model.layers.{i}.mlp_hidden"]["indices"])
        dropped = torch.ones(32, dtype=torch.bool)
        dropped[mlp] = False
        assert len(mlp) == 16 and float(score[mlp].min()) >= float(score[dropped].max()) * (1 - 1e-5), i
        t_attn, s_attn = t_layer.self_attn, s_layer.self_attn
        assert torch.equal(s_attn.k_proj.weight, t_attn.k_proj.weight[4 * group: 4 * group + 4][:, hidden])
        assert torch.equal(s_attn.q_proj.weight, t_attn.q_proj.weight[8 * group: 8 * group + 8][:, hidden])
        assert torch.equal(s_layer.mlp.up_proj.weight, t_layer.mlp.up_proj.weight[mlp][:, hidden])
        assert torch.equal(s_layer.mlp.down_proj.weight, t_layer.mlp.down_proj.weight[hidden][:, mlp])


def test_finished_runs_are_reused(tiny, studied):
    _, cfg = tiny
    corpus, teachers, inits, _ = studied
    run = teachers["qwen3"].parent / "selection.json"
    again = lm_study.train_student(inits["qwen3", "selection"], corpus, cfg, 0, run)
    assert again == json.loads(run.read_text()) and again["family"] == "qwen3"


def test_report_has_a_row_per_family_and_init_and_a_panel_per_family(studied, tmp_path):
    _, teachers, _, logs = studied
    summary = lm_study.report(logs, teachers, tmp_path)
    table = lm_study.summarize(logs)
    assert list(zip(table["family"], table["init"])) == [
        (f, i) for f in ("llama", "qwen3") for i in ("selection", "activation", "random")]
    assert list(table["seeds"]) == [1] * 6
    written = (tmp_path / "table.csv").read_text().splitlines()
    assert written[0] == "family,init,val_ppl_mean,val_ppl_std,start_val_loss,seeds,teacher_val_ppl"
    assert len(written) == 7 and set(summary["teachers"]) == {"llama", "qwen3"}
    assert "qwen3 teacher:" in (tmp_path / "table.md").read_text()
    assert Path(summary["figure"]).stat().st_size > 1000


def test_an_unknown_family_is_refused_before_training(tiny, tmp_path):
    _, cfg = tiny
    with pytest.raises(ValueError, match="unknown LM study family 'gpt2'; choose from llama, qwen3"):
        lm_study.pretrain_teacher(cfg, {}, tmp_path / "t", "gpt2")
    with pytest.raises(ValueError, match="unknown LM study family"):
        lm_study.run_study(tmp_path / "s", lm_study.LMStudyConfig(families=("llama", "gpt2")))
    assert not (tmp_path / "s").exists()


def test_workflow_config_takes_families_and_lists_their_jobs(tmp_path):
    """The schema accepts `lm.families` and refuses an unknown one; a dry run of lm_all has a
    teacher and (inits x seeds) students for each family."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from weightselect.io import read_yaml

    schema = str(REPO / "schemas" / "config.schema.yaml")
    config = read_yaml(REPO / "config.yaml")
    validate({**config, "lm": {"families": ["qwen3"], "seeds": [0]}}, schema)
    with pytest.raises(WorkflowError):
        validate({**config, "lm": {"families": ["gemma"]}}, schema)
    (tmp_path / "lm.yaml").write_text("lm:\n  seeds: [0, 1]\n")
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n",
                           "--configfile", str(REPO / "config.yaml"), str(tmp_path / "lm.yaml"), "--directory",
                           str(tmp_path), "lm_all"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for family in ("llama", "qwen3"):
        assert f"results/lm/{family}/teacher" in done.stdout
        assert done.stdout.count(f"output: results/lm/{family}/runs/") == 6
