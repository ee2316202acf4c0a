import re

import pytest

from weightselect.selection.layers import build_layer_map, layer_indices


@pytest.mark.parametrize(
    "method, expected",
    [
        ("first", [0, 1, 2, 3, 4, 5]),
        ("uniform", [0, 2, 4, 6, 8, 10]),
        ("mid", [3, 4, 5, 6, 7, 8]),
        ("last", [6, 7, 8, 9, 10, 11]),
    ],
)
def test_layer_maps_12_to_6(method, expected):
    assert layer_indices(method, 12, 6) == expected


def test_uniform_non_multiple_and_vit_l_to_s():
    assert layer_indices("uniform", 9, 6) == [0, 2, 3, 5, 6, 8]
    assert layer_indices("uniform", 24, 12) == list(range(0, 24, 2))


def test_pin_first_keeps_block_zero():
    assert layer_indices("last", 6, 3, pin_first=True) == [0, 4, 5]
    assert layer_indices("first", 6, 3, pin_first=True) == [0, 1, 2]


def test_deeper_student_is_an_error():
    with pytest.raises(ValueError, match="deeper"):
        layer_indices("first", 3, 4)


def test_layer_map_per_stage_and_key_renaming():
    pat = re.compile(r"^(?P<group>stages\.\d+\.blocks)\.(?P<index>\d+)\.")
    teacher = [f"stages.{s}.blocks.{b}.w" for s, n in enumerate([3, 3, 9, 3]) for b in range(n)]
    student = [f"stages.{s}.blocks.{b}.w" for s, n in enumerate([2, 2, 6, 2]) for b in range(n)]
    lmap = build_layer_map(teacher, student, pat, "last")
    assert lmap.groups["stages.2.blocks"] == [3, 4, 5, 6, 7, 8]
    assert lmap.teacher_key("stages.0.blocks.1.w") == "stages.0.blocks.2.w"
    assert lmap.teacher_key("stem.0.weight") == "stem.0.weight"
    assert lmap.as_dict()["stages.3.blocks.0"] == "stages.3.blocks.1"


def test_layer_map_missing_group_is_an_error():
    pat = re.compile(r"^(?P<group>blocks)\.(?P<index>\d+)\.")
    with pytest.raises(ValueError, match="lacks"):
        build_layer_map(["x.0.w"], ["blocks.0.w"], pat)
