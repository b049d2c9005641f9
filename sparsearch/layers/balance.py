"""Load-balancing loss for conditional layers (seed 000, App. C; Shazeer et al. 2017)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["cv_squared"]


def cv_squared(importance: Tensor, eps: float = 1e-10) -> Tensor:
    """Squared coefficient of variation, (σ/μ)², of a vector of per-path importances.

    Uses the population variance, so [1, 3] gives σ² = 1, μ = 2, CV² = 1/4. A single path gives 0.
    """
    if importance.numel() < 2:
        return importance.new_zeros(())
    return importance.var(unbiased=False) / (importance.mean().square() + eps)
