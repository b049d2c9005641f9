"""Image tensor helpers shared by the dataset readers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sparsearch.errors import ConfigError

__all__ = ["as_uint8", "resize_uint8"]


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


def as_uint8(images: Tensor, where: str) -> Tensor:
    """Images (..., C, H, W) as uint8: uint8 as they are, floating point in 0..1 scaled to 0..255.

    Refused (``ConfigError`` naming ``where``): another dtype; an empty channel, height or width; a float
    value that is not finite or not within [0, 1], named with its image's index (in the leading dimension)
    and the value — a cast would turn NaN into 0 and clip the rest, and the network would train on that.
    """
    if images.dim() >= 3 and min(images.shape[-3:]) == 0:
        raise ConfigError(f"{where}: images must not be empty, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ConfigError(f"{where}: images must be uint8 or floating point, got {images.dtype}")
    bad = ~(torch.isfinite(images) & (images >= 0) & (images <= 1))
    if bool(bad.any()):
        at = tuple(int(i) for i in torch.nonzero(bad)[0])
        index = f"image {at[0]}" if images.dim() == 4 else "the image"
        raise ConfigError(
            f"{where}: {index} holds {float(images[at]):g}; floating-point images must be finite and within [0, 1]"
        )
    return (images * 255.0).round().clamp(0, 255).to(torch.uint8)
