from __future__ import annotations

import random

import pytest

from sparsearch.cost import budget_text, format_flops, parse_budget
from sparsearch.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "flops"),
    [
        ("50GFLOPs", 50 * 10**9),
        ("50 GFLOPs", 50 * 10**9),
        ("32GMACs", 64 * 10**9),
        ("300MFLOPs", 3 * 10**8),
        ("5e10", 5 * 10**10),
        (" 1.5 TFLOPs ", 15 * 10**11),
        ("50gflops", 50 * 10**9),
        ("50GFLOPS", 50 * 10**9),
        ("50 gflops", 50 * 10**9),
        ("500kFLOPs", 5 * 10**5),
        ("500KFLOPs", 5 * 10**5),
        ("2tmacs", 4 * 10**12),
    ],
)
def test_budgets_parse(text: str, flops: int) -> None:
    assert parse_budget(text) == flops


@pytest.mark.parametrize("text", ["-1", "0", "abc", "50GB", "1e400", "", "nan", "inf", "50 PFLOPs"])
def test_bad_budgets_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"write e\.g\. 50GFLOPs, 50 GFLOPs, 32GMACs, 300MFLOPs, 500kFLOPs or 5e10"):
        parse_budget(text)


@pytest.mark.parametrize(("text", "hint"), [("50G", "50GFLOPs or 50GMACs"), ("300 m", "300MFLOPs or 300MMACs")])
def test_a_prefix_without_a_unit_says_to_add_one(text: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=f"add a unit, e.g. {hint}"):
        parse_budget(text)


def test_format_names_the_unit() -> None:
    assert format_flops(63_743_590_400) == "63.7 GFLOPs"
    assert format_flops(63_743_590_400, "MACs") == "31.9 GMACs"
    assert format_flops(512) == "512 FLOPs"


@pytest.mark.parametrize(
    ("flops", "text"),
    [
        (50 * 10**9, "50GFLOPs"),
        (12_340_000_000, "12.34GFLOPs"),
        (300 * 10**6, "300MFLOPs"),
        (2_462_592, "2.462592MFLOPs"),
        (5 * 10**12, "5TFLOPs"),
        (1000, "1KFLOPs"),
        (999, "999FLOPs"),
    ],
)
def test_budget_text_is_exact_and_short(flops: int, text: str) -> None:
    assert budget_text(flops) == text and parse_budget(text) == flops


def test_budget_text_reads_back_as_the_same_budget() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        flops = rng.randint(1, 10**15)
        assert parse_budget(budget_text(flops)) == flops
