"""Float images are refused unless finite and within [0, 1]; empty images are refused: in memory and streamed."""

from __future__ import annotations

import pytest
import torch

from sparsearch.data.images import as_uint8
from sparsearch.data.stream import item_image
from sparsearch.errors import ConfigError


def test_in_range_floats_and_uint8_convert() -> None:
    assert torch.equal(as_uint8(torch.tensor([[[[0.0, 1.0]]]]), "x"), torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert as_uint8(images, "x") is images


@pytest.mark.parametrize(
    ("value", "shown"), [(float("nan"), "nan"), (float("inf"), "inf"), (-0.5, "-0.5"), (1.5, "1.5")]
)
def test_a_bad_value_is_named_with_its_image(value: float, shown: str) -> None:
    images = torch.rand(4, 3, 5, 5)
    images[2, 1, 3, 0] = value
    with pytest.raises(ConfigError, match=rf"^split A: image 2 holds {shown}; floating-point images must be finite"):
        as_uint8(images, "split A")
    with pytest.raises(ConfigError, match=rf"the image holds {shown}"):
        item_image(images[2], 5, "dataset B")


def test_empty_images_are_refused() -> None:
    for shape in [(2, 3, 0, 4), (2, 0, 4, 4), (3, 4, 0)]:
        with pytest.raises(ConfigError, match="images must not be empty"):
            as_uint8(torch.zeros(shape), "x")
