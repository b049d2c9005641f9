"""Image tensor helpers shared by the dataset readers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["resize_uint8"]


def resize_uint8(images: Tensor, size: int, chunk: int = 1024) -> Tensor:
    """Resize uint8 (N, C, H, W) images to ``size``×``size`` (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = size < images.shape[-1]
    out = [
        F.interpolate(part.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for part in images.split(chunk)
    ]
    return torch.cat(out)
