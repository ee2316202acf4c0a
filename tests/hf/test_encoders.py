"""BERT's task heads, RoBERTa, XLM-R and DistilBERT: every head selected on the axis it reads (the
sequence, the pooler's output or its own dense layer), the label dimension kept; depth-only
students compute the teacher through the chosen layers; a halved MLP computes the masked teacher."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import cut_layers, load_strict, state, zero_outside

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices

BERTLIKE = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                max_position_embeddings=40, pad_token_id=0, num_labels=3)
DISTIL = dict(vocab_size=64, dim=32, n_layers=3, n_heads=4, hidden_dim=48, max_position_embeddings=40, pad_token_id=0,
              num_labels=3)
WIDTH = {"bert": "hidden_size=16,num_attention_heads=2,intermediate_size=24",
         "distilbert": "dim=16,n_heads=2,hidden_dim=24"}

# architecture -> (config, Auto class, {head tensor: the axis of each dimension, by hand}); "hidden":
# the sequence, "pooler": the pooler's output, "head": the head's own dense layer, None: labels/vocab
CASES = {
    "BertForSequenceClassification": ("Bert", "AutoModelForSequenceClassification",
                                      {"classifier.weight": (None, "pooler"), "bert.pooler.dense.weight": ("pooler", "hidden")}),
    "BertForMultipleChoice": ("Bert", "AutoModelForMultipleChoice", {"classifier.weight": (None, "pooler")}),
    "BertForTokenClassification": ("Bert", "AutoModelForTokenClassification", {"classifier.weight": (None, "hidden")}),
    "BertForQuestionAnswering": ("Bert", "AutoModelForQuestionAnswering", {"qa_outputs.weight": (None, "hidden")}),
    "BertForPreTraining": ("Bert", "AutoModelForPreTraining",
                           {"cls.seq_relationship.weight": (None, "pooler"),
                            "cls.predictions.transform.dense.weight": ("hidden", "hidden")}),
    "BertForNextSentencePrediction": ("Bert", "AutoModelForNextSentencePrediction",
                                      {"cls.seq_relationship.weight": (None, "pooler")}),
    "RobertaForMaskedLM": ("Roberta", "AutoModelForMaskedLM",
                           {"lm_head.dense.weight": ("hidden", "hidden"), "lm_head.layer_norm.weight": ("hidden",)}),
    "RobertaForSequenceClassification": ("Roberta", "AutoModelForSequenceClassification",
                                         {"classifier.dense.weight": ("head", "hidden"), "classifier.out_proj.weight": (None, "head")}),
    "RobertaForMultipleChoice": ("Roberta", "AutoModelForMultipleChoice", {"classifier.weight": (None, "pooler")}),
    "XLMRobertaForTokenClassification": ("XLMRoberta", "AutoModelForTokenClassification",
                                         {"classifier.weight": (None, "hidden")}),
    "DistilBertForMaskedLM": ("DistilBert", "AutoModelForMaskedLM", {"vocab_transform.weight": ("hidden", "hidden")}),
    "DistilBertForSequenceClassification": ("DistilBert", "AutoModelForSequenceClassification",
                                            {"pre_classifier.weight": ("head", "hidden"), "classifier.weight": (None, "head")}),
    "DistilBertForMultipleChoice": ("DistilBert", "AutoModelForMultipleChoice",
                                    {"pre_classifier.weight": ("head", "hidden"), "classifier.weight": (None, "head")}),
    "DistilBertForTokenClassification": ("DistilBert", "AutoModelForTokenClassification", {"classifier.weight": (None, "hidden")}),
    "DistilBertForQuestionAnswering": ("DistilBert", "AutoModelForQuestionAnswering", {"qa_outputs.weight": (None, "hidden")}),
}
BIAS_OF = {"pooler": "pooler.dense.bias", "head": ("classifier.dense.bias", "pre_classifier.bias")}


def _teacher(arch: str, folder):
    import transformers

    prefix = CASES[arch][0]
    cfg = dict(DISTIL if prefix == "DistilBert" else BERTLIKE)
    if "QuestionAnswering" in arch:
        cfg["num_labels"] = 2  # start and end logits
    torch.manual_seed(7)
    model = getattr(transformers, arch)(getattr(transformers, f"{prefix}Config")(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder)
    return model


def _ids(arch: str):
    ids = torch.randint(3, 64, (2, 9), generator=torch.Generator().manual_seed(4))
    return ids[:, None].expand(2, 2, 9).contiguous() if "MultipleChoice" in arch else ids


def _outputs(out):
    names = ("logits", "start_logits", "end_logits", "prediction_logits", "seq_relationship_logits")
    return [getattr(out, n) for n in names if getattr(out, n, None) is not None]


def _recovered(t: dict, s: dict, name: str) -> torch.Tensor:
    """The teacher indices of a student vector, found by value (teacher values are distinct)."""
    tv, sv = t[name], s[name]
    return torch.tensor([int((tv == x).nonzero()[0, 0]) for x in sv])


def _index_sets(t: dict, s: dict) -> dict:
    emb = next(k for k in s if k.endswith("embeddings.word_embeddings.weight"))
    tw, sw = t[emb], s[emb]
    sets = {"hidden": torch.tensor([next(j for j in range(tw.shape[1]) if torch.equal(tw[:, j], sw[:, i]))
                                    for i in range(sw.shape[1])])}
    for axis, names in BIAS_OF.items():
        for name in (names if isinstance(names, tuple) else (names,)):
            key = next((k for k in s if k.endswith(name)), None)
            if key is not None:
                sets[axis] = _recovered(t, s, key)
    return sets


@pytest.mark.parametrize("arch", sorted(CASES))
def test_task_heads_are_selected_on_the_axis_they_read(tmp_path, arch):
    teacher = _teacher(arch, tmp_path / "t")
    width = WIDTH["distilbert" if arch.startswith("DistilBert") else "bert"]
    result = wh.select(tmp_path / "t", width, method="random", seed=3)
    student = load_strict(result.save(tmp_path / "s"), CASES[arch][1])
    t, s = state(teacher), state(student)
    sets = _index_sets(t, s)
    assert not torch.equal(sets["hidden"], torch.arange(0, 32, 2))  # random: not the uniform set
    for name, axes in CASES[arch][2].items():
        expected = t[name]
        for d, axis in enumerate(axes):
            if axis is not None:
                expected = expected.index_select(d, sets[axis])
        assert torch.equal(s[name], expected), name
        if axes[0] is None:
            assert s[name].shape[0] == t[name].shape[0]  # labels (3), QA's 2, NSP's 2, one choice: kept
    with torch.no_grad():
        assert all(torch.isfinite(o).all() for o in _outputs(student(_ids(arch))))


@pytest.mark.parametrize("arch", ["BertForSequenceClassification", "BertForPreTraining", "RobertaForMaskedLM",
                                  "XLMRobertaForTokenClassification", "DistilBertForSequenceClassification",
                                  "DistilBertForQuestionAnswering"])
def test_depth_only_student_is_the_teacher_through_the_chosen_layers(tmp_path, arch):
    teacher = _teacher(arch, tmp_path / "t")
    depth = "n_layers=2" if arch.startswith("DistilBert") else "num_hidden_layers=2"
    student = load_strict(wh.select(tmp_path / "t", depth, layers="uniform").save(tmp_path / "s"), CASES[arch][1])
    layers = "distilbert.transformer.layer" if arch.startswith("DistilBert") else \
        f"{teacher.base_model_prefix}.encoder.layer"
    cut_layers(teacher, layers, layer_indices("uniform", 3, 2))
    with torch.no_grad():
        a, b = _outputs(student(_ids(arch))), _outputs(teacher(_ids(arch)))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch,mlp", [("BertForSequenceClassification", "{L}.intermediate.dense.weight:0,{L}.output.dense.weight:1"),
                                      ("RobertaForMaskedLM", "{L}.intermediate.dense.weight:0,{L}.output.dense.weight:1"),
                                      ("DistilBertForTokenClassification", "{L}.ffn.lin1.weight:0,{L}.ffn.lin2.weight:1")])
def test_half_mlp_student_computes_the_masked_teacher(tmp_path, arch, mlp):
    teacher = _teacher(arch, tmp_path / "t")
    distil = arch.startswith("DistilBert")
    student = load_strict(wh.select(tmp_path / "t", "hidden_dim=24" if distil else "intermediate_size=24")
                          .save(tmp_path / "s"), CASES[arch][1])
    layer = "distilbert.transformer.layer.{}" if distil else teacher.base_model_prefix + ".encoder.layer.{}"
    keep = {}
    for i in range(3):
        for item in mlp.split(","):
            name, dim = item.split(":")
            keep[name.format(L=layer.format(i))] = {int(dim): torch.arange(24) * 2}  # uniform 48 -> 24
    masked = zero_outside(teacher, keep)
    with torch.no_grad():
        a, b, full = _outputs(student(_ids(arch))), _outputs(masked(_ids(arch))), _outputs(teacher(_ids(arch)))
    assert not torch.allclose(b[0], full[0], atol=1e-4)  # the masking changed the function
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_label_count_and_the_classification_width_are_refused_clearly(tmp_path):
    _teacher("BertForSequenceClassification", tmp_path / "t")
    with pytest.raises(ValueError, match="num_labels is 2, the teacher's 3: this size is never selected"):
        wh.select(tmp_path / "t", {"num_labels": 2})
    _teacher("DistilBertForSequenceClassification", tmp_path / "d")
    with pytest.raises(ValueError, match=r"more attention heads \(num_attention_heads / n_head / n_heads\) .*\(8 > 4\)"):
        wh.select(tmp_path / "d", "dim=64,n_heads=8")
