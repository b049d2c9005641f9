"""Training through a Runtime: bfloat16 autocast and channels-last on the CPU, the same training
contract (finite losses, a checkpoint), and channels-last computing what the default layout computes."""

from __future__ import annotations

import torch

from sparsearch.spaces import get_space
from sparsearch.train import default_settings, train_space
from sparsearch.train.runtime import Runtime

SPACE = get_space("gateconnect_digits")
VALUES = SPACE.expand({"stage1.k": 3, "stage1.routing": "softmax", "fan_in": 2})
SETTINGS = default_settings("classification", epochs=1, steps_per_epoch=3, seed=0)


def _train(runtime: Runtime):
    return train_space(SPACE, VALUES, SETTINGS, runtime.device, data="digits", runtime=runtime)


def test_bfloat16_autocast_trains_close_to_float32() -> None:
    full = _train(Runtime(torch.device("cpu")))
    low = _train(Runtime(torch.device("cpu"), precision="bf16"))
    assert all(torch.isfinite(torch.tensor(h.train_loss)) for h in low.history)
    assert abs(low.history[-1].train_loss - full.history[-1].train_loss) < 0.1 * full.history[-1].train_loss


def test_channels_last_computes_what_the_default_layout_computes() -> None:
    """Trainings in two layouts part by rounding, amplified step by step as any two arithmetics are
    (tests/train/test_distributed.py); one network's outputs in the two layouts agree."""
    result = _train(Runtime(torch.device("cpu"), channels_last=True))
    assert all(torch.isfinite(torch.tensor(h.train_loss)) for h in result.history)
    model = result.model.eval()
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        nhwc = model(x.contiguous(memory_format=torch.channels_last))
        plain = model.to(memory_format=torch.contiguous_format)(x)
    assert float((nhwc - plain).abs().max()) < 1e-4 * float(plain.abs().max())
