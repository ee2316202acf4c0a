"""The transformers sweep's checks judge by function: right on the supported families' GQA heads and
MLPs, and wrong on a selection whose rows are out of step (every tensor still a teacher selection)."""

import pytest

import weightselect.hf as wh

real_select = wh.select


@pytest.fixture(scope="module")
def sweep(load_benchmark):
    return load_benchmark("zoo_sweep_hf")


def test_llama_is_right_by_function_in_every_check(sweep):
    row = sweep.sweep_family("llama")
    assert all(row[c] == "right" for c in sweep.CHECKS), row["detail"]
    assert row["detail"].count("outputs equal the masked teacher's") == 2  # inner and heads


def test_gate_rows_out_of_step_with_up_rows_are_wrong(sweep, monkeypatch):
    def rolled(*args, **kwargs):
        result = real_select(*args, **kwargs)
        for key, value in result.state_dict.items():
            if key.endswith("mlp.gate_proj.weight"):
                result.state_dict[key] = value.roll(1, 0)
        return result

    monkeypatch.setattr(wh, "select", rolled)
    row = sweep.sweep_family("llama")
    assert row["inner"] == "wrong" and "masked teacher" in row["detail"], row["detail"]
    assert row["identity"] == "wrong"  # the rows are rolled at the teacher's own size too
