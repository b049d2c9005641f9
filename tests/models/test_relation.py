"""Seed 000's CNN + Relation Network: the broadcast pair sum equals the pairs written out, the exact count
agrees with FlopCounterMode and the built parameters, and the family keeps its contract."""

from __future__ import annotations

import pytest
import torch

from sparsearch.config import RelationNetConfig, TaskFit, config_from_dict, layout
from sparsearch.cost import count
from sparsearch.cost.verify import verify_config
from sparsearch.errors import ConfigError
from sparsearch.models import RelationNetwork, build_model, find_network, fit_config

SETTINGS = [
    {},
    {"head": "mlp"},
    {"k": 6, "routing": "softmax"},
    {"k": {"conv2": 2, "conv3": 12, "conv4": 5}, "routing": "relu_l1", "g_layers": 3},
    {"experts": 2, "routing": "sigmoid", "k": 4, "input_size": 64},
    {"g_layers": 1, "head": "relation", "input_size": 40},
]


def _naive_relation(net: RelationNetwork, image, tokens, lengths) -> torch.Tensor:
    """The RN as the paper writes it: g on the concatenation [o_i; o_j; q] of every ordered pair."""
    q = net.gru(net.embed(tokens))[0][torch.arange(len(tokens)), lengths - 1]
    objects = net.objects(image, q)
    b, n, _ = objects.shape
    weight = torch.cat([net.g_left.weight, net.g_right.weight, net.g_question.weight], dim=1)
    pairs = torch.cat(
        [
            objects[:, :, None].expand(b, n, n, -1),
            objects[:, None, :].expand(b, n, n, -1),
            q[:, None, None].expand(b, n, n, -1),
        ],
        dim=3,
    )
    first = torch.relu(pairs @ weight.T + net.g_left.bias)
    return net.f(net.g_rest(first.flatten(1, 2)).sum(dim=1))


def test_the_broadcast_pair_sum_is_the_relation_network_in_float64() -> None:
    torch.manual_seed(0)
    net = build_model(layout("clevr_rn", input_size=48, g_layers=3)).double().eval()
    image = torch.randn(3, 3, 48, 48, dtype=torch.float64)
    tokens = torch.randint(1, 32, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    tokens[1, 4:] = 0
    tokens[2, 1:] = 0
    fast = net(image, tokens, lengths)
    assert torch.allclose(fast, _naive_relation(net, image, tokens, lengths), atol=1e-9, rtol=0)


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_the_count_agrees_with_flop_counter_mode_and_the_built_parameters(settings: dict) -> None:
    config = layout("clevr_rn", **settings)
    checked = verify_config(config)
    assert checked["analytic_flops"] == checked["flop_counter_flops"], checked
    assert count(config).params == sum(p.numel() for p in build_model(config).parameters())


def test_the_pair_terms_grow_with_the_square_of_the_cells() -> None:
    small, large = layout("clevr_rn", input_size=40), layout("clevr_rn", input_size=75)
    pairs = {c.objects: next(p for p in count(c).layers if p.name == "g.pairs").executed_macs for c in (small, large)}
    (n1, m1), (n2, m2) = sorted(pairs.items())
    assert m1 * n2 * n2 == m2 * n1 * n1


def test_the_family_round_trips_fits_vqa_data_and_refuses_classification() -> None:
    config = layout("clevr_rn", k=6, routing="softmax")
    assert config_from_dict(config.to_dict()) == config
    fitted = fit_config(config, TaskFit("vqa", 13, 1, cond_dim=999, vocab=27))
    assert (fitted.num_answers, fitted.vocab, fitted.cnn.in_channels, fitted.cnn.cond_dim) == (13, 27, 1, 64)
    net = build_model(fitted)
    assert find_network(net) is net and net(*net.example_inputs(2)).shape == (2, 13)
    with pytest.raises(ConfigError, match="needs VQA data"):
        fit_config(config, TaskFit("classification", 10, 3))
    with pytest.raises(ConfigError, match="head='attention'"):
        RelationNetConfig(config.cnn, head="attention")


def test_a_supernet_sets_the_cnn_knobs_on_shared_weights() -> None:
    torch.manual_seed(0)
    wide, narrow = layout("clevr_rn", k=12, routing="softmax"), layout("clevr_rn", k=3, routing="softmax")
    net, reference = build_model(wide).eval(), build_model(narrow).eval()
    reference.load_state_dict(net.state_dict())
    net.set_knobs(narrow)
    inputs = net.example_inputs(2)
    assert torch.equal(net(*inputs), reference(*inputs))
