from __future__ import annotations

import pytest
import torch

from sparsearch.layers import ImageGate, QuestionGate, select_top_k


def test_select_top_k_breaks_ties_by_the_given_order() -> None:
    scores = torch.tensor([[1.0, 5.0, 5.0, 0.0, 5.0]])
    assert select_top_k(scores, 2, torch.tensor([4, 3, 2, 1, 0])).tolist() == [[4, 2]]
    assert select_top_k(scores, 2, torch.tensor([0, 1, 2, 3, 4])).tolist() == [[1, 2]]
    assert select_top_k(scores, 4, torch.tensor([3, 1, 0, 2, 4])).tolist() == [[1, 2, 4, 0]]


def _tied(gate: ImageGate) -> ImageGate:
    with torch.no_grad():  # every path scores exactly the same
        gate.routing.trunk.weight.zero_()
        gate.routing.trunk.bias.zero_()
    return gate


def test_ties_at_initialisation_do_not_always_pick_the_lowest_indices() -> None:
    x = torch.randn(4, 16, 5, 5)
    lowest = [0, 1, 2]
    eval_picks = [_tied(ImageGate(16, 8, 3, "relu_l1")).eval()(x).index[0].sort().values.tolist() for _ in range(10)]
    assert any(p != lowest for p in eval_picks)  # each layer has its own tie order
    gate = _tied(ImageGate(16, 8, 3, "relu_l1"))
    chosen = torch.cat([gate(x).index.flatten() for _ in range(30)])  # training: a fresh order each step
    assert set(chosen.tolist()) == set(range(8))


def test_image_gate_masks_weights_to_the_top_k() -> None:
    gate = ImageGate(16, 8, 3, "softmax").eval()
    g = gate(torch.randn(6, 16, 4, 4))
    assert g.index.shape == (6, 3)
    assert g.mask.sum(1).tolist() == [3.0] * 6
    assert torch.equal(g.weights > 0, g.mask.bool())
    full = gate.routing(torch.randn(1, 16)).weights
    assert full.shape == (1, 8)
    top = g.weights.gather(1, g.index)
    assert (top[:, :-1] >= top[:, 1:]).all()  # index is in descending gate order


def test_question_gate_attends_over_the_grid_and_needs_cond() -> None:
    gate = QuestionGate(16, 12, 8, 2, "relu_l1")
    x, q = torch.randn(3, 16, 5, 5), torch.randn(3, 12)
    g = gate(x, q)
    assert g.index.shape == (3, 2)
    assert (g.weights.sum(1) <= 1 + 1e-6).all()  # L1-normalised over C, then kept to the top 2
    q2 = torch.randn(3, 12)
    gate.eval()
    assert not torch.equal(gate(x, q).weights, gate(x, q2).weights)  # conditioned on the question
    with pytest.raises(ValueError, match=r"needs cond of shape \(3, 12\), got None"):
        gate(x)
    with pytest.raises(ValueError, match="ImageGate takes no cond"):
        ImageGate(16, 8, 2)(x, q)


@pytest.mark.parametrize(
    ("k", "routing", "message"),
    [
        (0, "softmax", "k must be in 1..8"),
        (9, "softmax", "k must be in 1..8"),
        (4, "constant", "constant routing cannot rank paths"),
    ],
)
def test_bad_k_raises(k: int, routing: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageGate(16, 8, k, routing)


@pytest.mark.parametrize("c", [2, 5, 32])
def test_ranking_equals_a_stable_sort_with_ties_broken_by_order(c) -> None:
    g = torch.Generator().manual_seed(c)
    for _ in range(20):
        scores = torch.randint(0, 3, (16, c), generator=g).float()  # many exact ties
        order = torch.randperm(c, generator=g)
        for k in (1, c // 2 or 1, c):
            expected = order[torch.sort(scores[:, order], dim=1, descending=True, stable=True).indices[:, :k]]
            assert torch.equal(select_top_k(scores, k, order), expected)


def test_ranking_keeps_a_permutation_when_scores_are_not_finite() -> None:
    scores = torch.tensor([[float("nan"), 1.0, float("-inf"), float("nan"), float("inf")]])
    order = torch.arange(5)
    assert select_top_k(scores, 5, order).tolist() == [[0, 3, 4, 1, 2]]  # NaN first, as torch.sort puts it
    assert select_top_k(scores, 2, order).tolist() == [[0, 3]]
