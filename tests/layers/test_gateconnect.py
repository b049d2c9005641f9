from __future__ import annotations

import pytest
import torch

from sparsearch.layers import GateConnectModule, clip_gates_, split_gate_parameters

C, IN, OUT, W = 6, 8, 8, 2


def _inputs(batch: int = 3, n: int = C, ch: int = IN) -> torch.Tensor:
    return torch.randn(batch, n, ch, 5, 5)


def test_training_draws_exactly_k_distinct_inputs_per_branch() -> None:
    m = GateConnectModule(IN, OUT, C, W, fan_in=2)
    for _ in range(20):
        g = m._step_gates()
        assert set(g.detach().unique().tolist()) <= {0.0, 1.0}
        assert g.detach().sum(1).tolist() == [2.0] * C


def test_sampling_never_fails_when_gates_are_clipped_to_zero() -> None:
    m = GateConnectModule(IN, OUT, C, W, fan_in=3)
    with torch.no_grad():
        m.gates.fill_(-1.0)
    clip_gates_(m)
    assert torch.equal(m.gates, torch.full((C, C), m.gate_floor))
    assert m(_inputs()).shape == (3, C, OUT, 5, 5)


def test_straight_through_gradient_is_the_gradient_at_the_sampled_binary_gates() -> None:
    for in_ch, out_ch, stride in ((IN, OUT, 1), (IN, 16, 2)):  # identity and shared projection shortcut
        m = GateConnectModule(in_ch, out_ch, C, W, fan_in=2, stride=stride)
        inputs = _inputs(ch=in_ch)
        torch.manual_seed(5)
        binary = m._step_gates().detach()  # the draw the next forward will make
        torch.manual_seed(5)
        m(inputs).square().sum().backward()
        # The same network with the gate matrix as a leaf at that binary point: ∂ℓ/∂g_jk exactly.
        probe = binary.clone().requires_grad_()
        m.mask, m.frozen = probe, True
        m(inputs).square().sum().backward()
        assert torch.allclose(m.gates.grad, probe.grad, atol=1e-4, rtol=1e-4)
        assert (m.gates.grad != 0).all()  # unselected gates get gradient too


def test_clip_after_a_step_and_gates_are_kept_apart_for_no_weight_decay() -> None:
    model = torch.nn.Sequential(GateConnectModule(IN, OUT, C, W, 2), GateConnectModule(OUT, OUT, C, W, 2))
    weights, gates = split_gate_parameters(model)
    assert gates == [model[0].gates, model[1].gates]
    assert len(weights) + len(gates) == len(list(model.parameters()))
    opt = torch.optim.SGD(
        [{"params": weights, "weight_decay": 5e-4}, {"params": gates, "lr": 50.0, "weight_decay": 0.0}], lr=0.1
    )
    model(_inputs()).square().sum().backward()
    opt.step()
    clip_gates_(model)
    for g in gates:
        assert g.min() >= model[0].gate_floor and g.max() <= 1.0
        assert not torch.all(g == 0.5)  # the step moved them


def test_freeze_keeps_the_top_k_gates_and_eval_uses_them() -> None:
    m = GateConnectModule(IN, OUT, C, W, fan_in=2)
    with torch.no_grad():
        m.gates.copy_(torch.arange(C * C, dtype=torch.float).view(C, C) % 7 / 7)
    top = m.gates.topk(2, dim=1).indices.sort(1).values
    m.eval()
    assert torch.equal(m.connectivity_matrix().nonzero()[:, 1].view(C, 2), top)
    m.train()
    m.freeze()
    assert not m.gates.requires_grad
    assert torch.equal(m._step_gates(), m.mask)  # training after freezing: fixed connectivity
    assert torch.equal(m.mask.nonzero()[:, 1].view(C, 2), top)
    assert sorted(m.active_connections()) == sorted((j, int(k)) for j in range(C) for k in top[j])


def test_freezing_ties_does_not_always_keep_the_lowest_indices() -> None:
    picks = []
    for _ in range(8):
        m = GateConnectModule(IN, OUT, C, W, fan_in=2)  # all gates equal at initialisation
        m.freeze()
        picks.append(m.mask.nonzero()[:, 1].tolist())
    assert any(p != [0, 1] * C for p in picks)


def test_fixed_full_reads_the_resnext_aggregation_of_all_inputs() -> None:
    # K = C: every branch reads ReLU(mean of the inputs), as a ResNeXt block reads ReLU(x + Σ F).
    full = GateConnectModule(IN, OUT, C, W, fan_in=1, connectivity="fixed_full").eval()
    single = GateConnectModule(IN, OUT, C, W, fan_in=1, num_inputs=1).eval()
    state = {k: v for k, v in full.state_dict().items() if k not in ("gates", "mask", "tiebreak", "frozen_flag")}
    single.load_state_dict(state, strict=False)
    inputs = _inputs()
    assert full.fan_in == C
    assert torch.allclose(full(inputs), single(torch.relu(inputs.mean(1, keepdim=True))), atol=1e-5)
    assert len(full.active_connections()) == C * C


@pytest.mark.parametrize("fan_in", [1, 4, C])
def test_activations_keep_their_scale_through_a_stack_of_modules(fan_in: int) -> None:
    # Each branch output carries its own copy of the residual stream; a plain sum of K of them grew
    # the activations about K-fold per module (K = C: 6^8 ≈ 1.7e6 after 8 modules) and SGD diverged.
    torch.manual_seed(0)
    modules = [GateConnectModule(OUT, OUT, C, W, fan_in=fan_in) for _ in range(8)]
    x = torch.relu(torch.randn(16, C, OUT, 5, 5))
    with torch.no_grad():
        for m in modules:
            x = m.train()(x)
    assert 0.3 < float(x.std()) < 5.0


def test_fixed_random_has_k_fixed_connections() -> None:
    m = GateConnectModule(IN, OUT, C, W, fan_in=2, connectivity="fixed_random")
    first = m.mask.clone()
    assert first.sum(1).tolist() == [2.0] * C
    m(_inputs())
    assert torch.equal(m._step_gates(), first)
    assert not m.gates.requires_grad


def test_stride_projection_and_single_stem_input() -> None:
    m = GateConnectModule(16, 32, C, 4, fan_in=1, stride=2, num_inputs=1)
    out = m(torch.randn(2, 16, 8, 8)[:, None])  # the stem as the single input of every branch
    assert out.shape == (2, C, 32, 4, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fan_in=7), r"fan_in=7 must be in 1..6"),
        (dict(fan_in=0), r"fan_in=0 must be in 1..6"),
        (dict(fan_in=2, connectivity="dense"), "connectivity must be one of"),
        (dict(fan_in=2, gate_floor=0.5), "gate_floor must be in"),
        (dict(fan_in=1, num_inputs=0), "num_inputs must be a positive int"),
    ],
)
def test_bad_arguments_raise_with_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GateConnectModule(IN, OUT, C, W, **kwargs)


def test_wrong_input_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 6, 8, H, W\), got \(3, 8, 5, 5\)"):
        GateConnectModule(IN, OUT, C, W, 2)(torch.randn(3, 8, 5, 5))
