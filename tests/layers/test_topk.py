from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.layers import TopKBottleneck, cv_squared
from sparsearch.layers.topk import _path_batch_norm


def _flops(module: torch.nn.Module, *args: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops()


def _pair(block: TopKBottleneck) -> tuple[TopKBottleneck, TopKBottleneck]:
    masked, sparse = block, copy.deepcopy(block)
    masked.execution, sparse.execution = "masked", "sparse"
    return masked, sparse


def _run(block: TopKBottleneck, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    torch.manual_seed(7)  # same tie-break order and routing noise for both executions
    return block(x, cond)


CASES = [
    dict(in_channels=64, out_channels=64, cardinality=8, width=4, k=3),
    dict(in_channels=32, out_channels=64, cardinality=8, width=4, k=2, stride=2),
    dict(in_channels=48, out_channels=48, cardinality=12, width=4, k=6, routing="relu_l1", cond_dim=10),
    dict(in_channels=32, out_channels=32, cardinality=8, width=2, k=2, routing="noisy_topk"),
    dict(in_channels=32, out_channels=32, cardinality=4, width=8, k=1, routing="sigmoid"),
    dict(in_channels=32, out_channels=48, cardinality=8, width=4, k=3, stride=2, experts=4),
]


def _case_id(c: dict) -> str:
    return f"C{c['cardinality']}k{c['k']}s{c.get('stride', 1)}n{c.get('experts', 1)}"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_sparse_equals_masked_outputs_gradients_and_running_stats(case: dict, train: bool) -> None:
    block = TopKBottleneck(**case).train(train)
    for bn in (block.bn_reduce, block.bn_conv):  # non-trivial running statistics for eval
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
    masked, sparse = _pair(block)
    torch.manual_seed(3)
    # Per-example channel offsets make the pooled features, hence the chosen paths, differ.
    x = torch.randn(6, case["in_channels"], 9, 9) + 3 * torch.randn(6, case["in_channels"], 1, 1)
    cond = torch.randn(6, case["cond_dim"]) if "cond_dim" in case else None
    a, b = _run(masked, x, cond), _run(sparse, x, cond)
    assert a.shape == b.shape
    assert (a - b).abs().max() <= 1e-5
    selected = masked.last_gates.index
    assert torch.equal(selected, sparse.last_gates.index)
    assert len({tuple(row) for row in selected.sort(1).values.tolist()}) > 1  # examples differ
    (a.square().sum()).backward()
    (b.square().sum()).backward()
    # float32 rounding grows with the gradients' size: compare against the largest gradient of the block
    scale = max(p.grad.abs().max().item() for p in masked.parameters() if p.grad is not None)
    for (name, pa), pb in zip(masked.named_parameters(), sparse.parameters(), strict=True):
        if pa.grad is None:
            assert pb.grad is None, name
        else:
            assert (pa.grad - pb.grad).abs().max().item() <= 1e-5 * scale, name
    for name, buf in masked.named_buffers():
        assert torch.allclose(buf.float(), dict(sparse.named_buffers())[name].float(), atol=1e-6), name


def test_path_batch_norm_follows_nn_batchnorm_running_statistics() -> None:
    block = TopKBottleneck(16, 16, 4, 4, k=4)  # k = C: every example in every path's statistics
    reference = copy.deepcopy(block.bn_reduce)
    for momentum in (0.1, None):
        block.bn_reduce.momentum = reference.momentum = momentum
        h = torch.randn(5, 16, 3, 3)
        channel = torch.arange(16).expand(5, 16)
        out = _path_batch_norm(h.view(5, 16, 9), channel, torch.ones(5, 16), block.bn_reduce)
        assert torch.allclose(out.view(5, 16, 3, 3), reference(h), atol=1e-5)
        assert torch.allclose(block.bn_reduce.running_mean, reference.running_mean, atol=1e-6)
        assert torch.allclose(block.bn_reduce.running_var, reference.running_var, atol=1e-6)
        assert block.bn_reduce.num_batches_tracked == reference.num_batches_tracked


def test_k_equal_c_runs_every_path_in_both_executions() -> None:
    masked, sparse = _pair(TopKBottleneck(32, 32, 8, 4, k=8).eval())
    x = torch.randn(2, 32, 6, 6)
    assert (masked(x) - sparse(x)).abs().max() <= 1e-5
    with torch.inference_mode():  # the in-place epilogue of inference gives the same result
        assert (masked(x) - sparse(x)).abs().max() <= 1e-5
    assert masked.last_gates.mask.sum().item() == 2 * 8
    assert _flops(masked, x) == _flops(sparse, x)


def test_constant_routing_with_k_equal_c_is_the_plain_resnext_block() -> None:
    block = TopKBottleneck(32, 32, 8, 4, k=8, routing="constant").eval()
    x = torch.randn(2, 32, 6, 6)
    h = torch.relu(block.bn_reduce(block.reduce(x)))
    h = torch.relu(block.bn_conv(block.conv(h)))
    plain = torch.relu(block.bn_expand(block.expand(h)) + x)
    assert torch.allclose(block(x), plain, atol=1e-6)


def test_executed_flops_are_k_over_c_of_the_paths_plus_the_fixed_part_exactly() -> None:
    block = TopKBottleneck(64, 64, cardinality=8, width=4, k=2).eval()
    x = torch.randn(4, 64, 8, 8)
    # One path per example, 2 FLOPs per MAC on an 8×8 map (64 positions):
    # reduce 64·4·64 = 16384, 3×3 4·4·9·64 = 9216, expand 4·64·64 = 16384 -> 41984 MACs = 83968 FLOPs.
    path = 2 * (64 * 4 * 64 + 4 * 4 * 9 * 64 + 4 * 64 * 64)
    assert path == 83968
    fixed = 2 * 64 * 8  # controller: Linear(64 -> 8) on the pooled input; identity shortcut
    block.execution = "sparse"
    assert _flops(block, x) == 4 * (2 * path + fixed) == 675840
    with torch.inference_mode():  # the fused inference epilogue adds no multiply-adds
        assert _flops(block, x) == 675840
    block.execution = "masked"
    assert _flops(block, x) == 4 * (8 * path + fixed) == 2691072


def test_executed_flops_with_condconv_experts_count_the_mixing() -> None:
    block = TopKBottleneck(64, 64, cardinality=8, width=4, k=2, experts=4).eval()
    x = torch.randn(4, 64, 8, 8)
    path = 2 * (64 * 4 * 64 + 4 * 4 * 9 * 64 + 4 * 64 * 64)  # 83968 FLOPs, as without experts
    row = 64 * 4 + 4 * 4 * 9 + 4 * 64  # one path's weights: 656
    routing = 2 * (64 * 8 + 64 * 4)  # path controller Linear(64 -> 8) + expert routing Linear(64 -> 4)
    block.execution = "sparse"  # mixes the k chosen paths' rows only: n·k·row MACs
    assert _flops(block, x) == 4 * (2 * path + 2 * 4 * 2 * row + routing) == 719872
    block.execution = "masked"  # CondConv2d mixes every path's kernel: n·C·row MACs
    assert _flops(block, x) == 4 * (8 * path + 2 * 4 * 8 * row + routing) == 2861056


def test_executed_flops_with_stride_and_projection_shortcut() -> None:
    block = TopKBottleneck(32, 64, cardinality=8, width=4, k=3, stride=2).eval()
    x = torch.randn(2, 32, 8, 8)
    # reduce at 8×8: 32·4·64 = 8192; 3×3 and expand at 4×4: 4·4·9·16 = 2304, 4·64·16 = 4096 MACs
    path = 2 * (8192 + 2304 + 4096)  # 29184 FLOPs
    fixed = 2 * (32 * 64 * 16) + 2 * 32 * 8  # projection 1×1 stride 2 (65536) + controller (512)
    assert _flops(block, x) == 2 * (3 * path + fixed) == 307200


def test_balance_loss_is_cv_squared_of_summed_gate_values() -> None:
    assert cv_squared(torch.tensor([1.0, 3.0])).item() == pytest.approx(0.25)  # σ² 1 / μ² 4
    assert cv_squared(torch.tensor([2.0, 2.0, 2.0])).item() == 0.0
    block = TopKBottleneck(32, 32, 8, 4, k=2)
    block(torch.randn(5, 32, 4, 4))
    importance = block.last_gates.weights.sum(0)
    assert torch.allclose(block.balance_loss, importance.var(unbiased=False) / importance.mean() ** 2)
    block.balance_loss.backward()  # differentiable, reaches the controller
    assert block.gate.routing.trunk.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(k=9), "k=9 must be in 1..8"),
        (dict(k=0), "k=0 must be in 1..8"),
        (dict(k=2, width=0), "width must be a positive int, got width=0"),
        (dict(k=2, execution="fast"), "execution must be one of"),
        (dict(k=2, routing="argmax"), "unknown routing 'argmax'"),
    ],
)
def test_bad_arguments_raise_with_the_value(kwargs: dict, message: str) -> None:
    args = dict(in_channels=16, out_channels=16, cardinality=8, width=4) | kwargs
    with pytest.raises(ValueError, match=message):
        TopKBottleneck(**args)
