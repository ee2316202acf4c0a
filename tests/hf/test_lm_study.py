"""The LM study's steps on a tiny corpus written by the test (a few training steps each)."""
from __future__ import annotations

import json

import pytest
import torch
from hf_helpers import load_strict

from weightselect.hf import lm_study


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


def test_study_steps_end_to_end(tiny, tmp_path):
    root, cfg = tiny
    corpus = lm_study.load_corpus(cfg, root)
    teacher_dir = lm_study.pretrain_teacher(cfg, corpus, tmp_path / "teacher")
    teacher = load_strict(teacher_dir)
    sel = lm_study.make_init(teacher_dir, cfg, "selection", 0, tmp_path / "sel")
    rnd = lm_study.make_init(teacher_dir, cfg, "random", 0, tmp_path / "rnd")
    s_sel, s_rnd = load_strict(sel), load_strict(rnd)
    assert s_sel.config.hidden_size == s_rnd.config.hidden_size == 8
    emb = teacher.model.embed_tokens.weight.detach()[:, torch.arange(8) * 2]
    assert torch.equal(s_sel.model.embed_tokens.weight.detach(), emb)
    assert not torch.equal(s_rnd.model.embed_tokens.weight.detach(), emb)
    logs = [lm_study.train_student(d, corpus, cfg, 0, tmp_path / f"{n}.json", n) for n, d in (("selection", sel), ("random", rnd))]
    assert [len(r["curve"]) for r in logs] == [3, 3] and logs[0]["val_ppl"] > 1
    again = lm_study.train_student(sel, corpus, cfg, 0, tmp_path / "selection.json", "selection")
    assert again == json.loads((tmp_path / "selection.json").read_text())  # a finished run is reused
    table = lm_study.summarize(logs)
    assert sorted(table["init"]) == ["random", "selection"] and list(table["seeds"]) == [1, 1]
    assert lm_study.plot_curves(logs, tmp_path / "c.png", 3.0).stat().st_size > 1000
