import pytest
import torch

from weightselect.selection import elements


def test_uniform_multiple_is_step():
    assert elements.uniform_indices(384, 192).tolist() == list(range(0, 384, 2))
    assert elements.uniform_indices(768, 192).tolist() == list(range(0, 768, 4))


def test_uniform_non_multiple_is_rounded_linspace():
    got = elements.uniform_indices(10, 4).tolist()
    # linspace(0, 9, 4) = 0, 3, 6, 9
    assert got == [0, 3, 6, 9]
    got = elements.uniform_indices(1024, 384)
    assert got[0] == 0 and got[-1] == 1023 and len(set(got.tolist())) == 384


def test_consecutive_is_prefix():
    assert elements.consecutive_indices(8, 3).tolist() == [0, 1, 2]


def test_random_seeded_sorted_distinct():
    a = elements.random_indices(100, 30, seed=1, axis="embed")
    b = elements.random_indices(100, 30, seed=1, axis="embed")
    c = elements.random_indices(100, 30, seed=2, axis="embed")
    d = elements.random_indices(100, 30, seed=1, axis="blocks.0.attn")
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 30 and int(a.max()) < 100


@pytest.mark.parametrize("fn", [elements.uniform_indices, elements.consecutive_indices, elements.random_indices])
def test_student_wider_is_an_error(fn):
    with pytest.raises(ValueError, match="wider"):
        fn(4, 5)


def test_l1_keeps_largest_norm_slices_in_order():
    t = torch.zeros(4, 6)
    t[:, 1] = 5.0
    t[:, 4] = -3.0
    t[:, 2] = 0.5
    assert elements.l1_indices(t, 1, 2).tolist() == [1, 4]
    assert elements.l1_indices(t, 1, 3).tolist() == [1, 2, 4]


def test_magnitude_keeps_largest_in_order_and_squeezes():
    t = torch.tensor([[1.0, -9.0, 2.0], [8.0, 0.1, -7.0]])
    out = elements.magnitude_select(t, (2, 2))
    assert out.tolist() == [[-9.0, 2.0], [8.0, -7.0]]


def test_take_selects_each_dim():
    t = torch.arange(24).reshape(4, 6)
    out = elements.take(t, [torch.tensor([0, 2]), torch.tensor([1, 3, 5])])
    assert out.tolist() == [[1, 3, 5], [13, 15, 17]]
    assert torch.equal(elements.take(t, [None, None]), t)


def test_select_indices_rejects_per_tensor_methods():
    with pytest.raises(ValueError, match="consistent methods"):
        elements.select_indices("random_nocons", 4, 2)


def test_take_with_scratch_gives_the_same_new_tensors():
    scratch = elements.Scratch()
    gen = torch.Generator().manual_seed(0)
    cases = [
        (torch.randn(12, 10, generator=gen), [torch.tensor([0, 5, 11]), torch.tensor([1, 2, 9])]),
        (torch.randn(6, 8, 3, 3, generator=gen).to(torch.bfloat16), [torch.tensor([0, 3]), torch.tensor([7, 1]), None, None]),
        (torch.randn(5, 7, 9, generator=gen), [torch.tensor([4, 0]), torch.tensor([2, 3, 6]), torch.tensor([8])]),
        (torch.randn(4, 6, generator=gen), [torch.arange(4), torch.tensor([5])]),  # a whole dimension: one step
        (torch.randn(4, 6, generator=gen), [None, None]),
    ]
    kept = []
    for tensor, idx in cases:
        got = elements.take(tensor, idx, scratch)
        assert torch.equal(got, elements.take(tensor, idx)) and got.dtype == tensor.dtype and got.is_contiguous()
        kept.append((got.clone(), got))
    assert all(s is not None for s in scratch._slots)  # the two- and three-step cases went through it
    for copy, got in kept:  # later tensors do not overwrite earlier results (only the steps use the scratch)
        assert torch.equal(copy, got)
        assert all(got.untyped_storage().data_ptr() != s.untyped_storage().data_ptr() for s in scratch._slots if s is not None)
