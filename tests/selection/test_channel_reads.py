"""Layers that read channels the forward concatenated, sliced or split: found by one meta-device
forward (weightselect.selection.trace), and a change of their input widths refused by selection
instead of being guessed from sizes (DLA's roots, RexNet's partial shortcut, Inception's branches)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from weightselect.selection import select
from weightselect.selection.trace import channel_reads


class Concat(nn.Module):
    """Two branches concatenated along the channels, read by a 1x1 convolution (a DLA root)."""

    def __init__(self, c: int = 8, out: int = 6):
        super().__init__()
        self.a = nn.Conv2d(3, c, 3, padding=1)
        self.b = nn.Conv2d(3, c, 3, padding=1)
        self.root = nn.Conv2d(2 * c, out, 1)
        self.bn = nn.BatchNorm2d(out)
        self.head = nn.Linear(out, 5)
        self.pretrained_cfg = {"input_size": (3, 8, 8)}

    def forward(self, x):
        y = self.bn(self.root(torch.relu(torch.cat([self.a(x), self.b(x)], dim=1))))
        return self.head(y.mean((2, 3)))


class PartialShortcut(nn.Module):
    """RexNet's shortcut: added to the first ``c`` of ``2c`` output channels."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.out = nn.Conv2d(2 * c, 2 * c, 1)
        self.pretrained_cfg = {"input_size": (3, 8, 8)}

    def forward(self, x):
        x = self.stem(x)
        y = self.expand(x)
        y[:, : x.shape[1]] += x
        return self.out(y)


class TokensAndWindows(nn.Module):
    """A class token concatenated along the tokens and a window cut along the height (NHWC): no
    layer reads a concatenation or a part of its channels."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.fc = nn.Linear(4, 4)
        self.conv = nn.Conv2d(4, 4, 1)
        self.pretrained_cfg = {"input_size": (3, 8, 8)}

    def forward(self, x):
        tokens = x[:, :1].expand(-1, 4, -1, -1).flatten(2).transpose(1, 2)  # (B, 64, 4)
        tokens = self.fc(torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1))
        grid = tokens[:, 1:].reshape(-1, 8, 8, 4)[:, :6]  # NHWC, cut along the height
        return self.conv(grid.permute(0, 3, 1, 2))


def _meta(cls, **kwargs):
    with torch.device("meta"):
        return cls(**kwargs)


def test_the_layers_that_read_a_concatenation_or_a_slice_are_found():
    reads = channel_reads(_meta(Concat))
    assert set(reads) == {"root.weight", "root.bias"} and "concatenation" in reads["root.weight"]
    reads = channel_reads(_meta(PartialShortcut))
    assert set(reads) == {"out.weight", "out.bias"} and "slice" in reads["out.weight"]


def test_plain_chains_read_nothing_assembled():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
    model.pretrained_cfg = {"input_size": (3, 8, 8)}
    assert channel_reads(model) == {}
    assert channel_reads(_meta(TokensAndWindows)) == {}
    assert channel_reads(Concat()) is None  # real weights: not traced


def test_a_changed_concatenated_input_is_refused_naming_the_layer():
    torch.manual_seed(0)
    teacher = Concat(c=8, out=6)
    with pytest.raises(ValueError, match=r"'root\.weight' .*inputs of root are a concatenation \(torch\.cat\) of "
                                         r"its input channels .*--exclude root"):
        select(teacher, _meta(Concat, c=4, out=6))
    with pytest.raises(ValueError, match=r"inputs of out are a slice of its input channels"):
        select(PartialShortcut(c=4), _meta(PartialShortcut, c=2))


def test_only_the_output_width_of_a_reader_may_change():
    """Branches kept, the root's output halved: the root's rows are selected, its input columns
    (the concatenation) are the teacher's own, so the selection equals hand-taken indices."""
    torch.manual_seed(0)
    teacher = Concat(c=8, out=6)
    result = select(teacher, _meta(Concat, c=8, out=3), method="consecutive")
    t = teacher.state_dict()
    assert torch.equal(result.state_dict["root.weight"], t["root.weight"][:3])
    assert torch.equal(result.state_dict["head.weight"], t["head.weight"][:, :3])
    assert torch.equal(result.state_dict["a.weight"], t["a.weight"])
