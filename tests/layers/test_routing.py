from __future__ import annotations

import pytest
import torch

from sparsearch.layers import create_routing, routing_names

IN, N = 64, 4


@pytest.mark.parametrize("name", routing_names())
def test_every_routing_gives_weights_and_scores_of_shape(name: str) -> None:
    r = create_routing(name, IN, N, k=2)
    out = r(torch.randn(5, IN))
    assert out.weights.shape == out.scores.shape == (5, N)
    assert torch.isfinite(out.weights).all()
    assert (out.weights >= 0).all()


@pytest.mark.parametrize("name", routing_names())
def test_per_channel_routing_has_an_expert_weight_per_channel(name: str) -> None:
    r = create_routing(name, IN, N, channels=6, k=2)
    assert r(torch.randn(3, IN)).weights.shape == (3, N, 6)


def test_normalisations() -> None:
    x = torch.randn(7, IN)
    assert torch.allclose(create_routing("softmax", IN, N)(x).weights.sum(1), torch.ones(7))
    w = create_routing("sigmoid", IN, N)(x).weights
    assert ((w > 0) & (w < 1)).all()
    w = create_routing("relu_l1", IN, N, channels=3)(x).weights  # sums over experts, per channel
    total = w.sum(1)
    assert (((total - 1).abs() < 1e-6) | (total == 0)).all()  # L1-normalised, or all ReLU'd to zero
    assert torch.equal(create_routing("constant", IN, N)(x).weights, torch.ones(7, N))


def test_relu_l1_all_negative_is_zero_not_nan_and_scores_still_rank() -> None:
    r = create_routing("relu_l1", 2, 3)
    with torch.no_grad():
        r.trunk.weight.zero_()
        r.trunk.bias.copy_(torch.tensor([-3.0, -1.0, -2.0]))
    out = r(torch.randn(4, 2))
    assert torch.equal(out.weights, torch.zeros(4, 3))
    assert out.scores.argmax(1).tolist() == [1, 1, 1, 1]


def test_noisy_top_k_keeps_exactly_k_and_is_noisy_in_training_only() -> None:
    r = create_routing("noisy_topk", IN, 8, k=3)
    x = torch.randn(10, IN)
    w = r(x).weights
    assert ((w > 0).sum(1) == 3).all()
    assert torch.allclose(w.sum(1), torch.ones(10))
    assert not torch.equal(r(x).scores, r(x).scores)  # fresh noise each training step
    r.eval()
    assert torch.equal(r(x).scores, r(x).scores)
    assert torch.equal(r(x).scores, r.logits(x))


def test_hidden_layer_sizes_follow_seed_001() -> None:
    def params(hidden: str) -> int:
        return sum(p.numel() for p in create_routing("sigmoid", IN, N, hidden=hidden).parameters())

    assert params("none") == 64 * 4 + 4  # 260
    assert params("small") == (64 * 8 + 8) + (8 * 4 + 4)  # in/8 = 8 hidden units: 556
    assert params("medium") == (64 * 64 + 64) + (64 * 4 + 4)  # 4420
    assert params("large") == (64 * 512 + 512) + (512 * 4 + 4)  # 8·in = 512: 35332


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "tanh"}, "unknown routing 'tanh'; known: constant, noisy_topk, relu_l1, sigmoid, softmax"),
        ({"name": "softmax", "hidden": "huge"}, "hidden must be one of"),
        ({"name": "noisy_topk", "k": 9}, "noisy_topk routing needs 1 <= k <= 4, got k=9"),
        ({"name": "noisy_topk"}, "got k=None"),
        ({"name": "softmax", "channels": 0}, "channels must be a positive int"),
    ],
)
def test_bad_arguments_raise_with_the_value(kwargs: dict, message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        create_routing(name, IN, N, **kwargs)
