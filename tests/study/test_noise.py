"""Standard errors of accuracies and of their differences, paired and unpaired, with the arithmetic."""

from __future__ import annotations

import math

import pytest

from sparsearch.study.noise import Measurement, compare, difference, pack, standard_error, unpack


def test_pack_and_unpack_keep_every_bit() -> None:
    bits = [True, False, True, True, False, False, False, True, True, False, True]  # 11 bits: 2 bytes
    text = pack(bits)
    assert len(text) == 4
    assert unpack(text, len(bits)).tolist() == bits


def test_binomial_standard_error() -> None:
    # √(0.8 · 0.2 / 1000) = √0.00016 ≈ 0.012649
    assert standard_error(0.8, 1000) == pytest.approx(math.sqrt(0.00016))
    assert standard_error(0.5, 0) == math.inf


def test_paired_difference_is_the_mean_and_error_of_per_example_differences() -> None:
    a = {"accuracy": 0.6, "examples": 5, "correct": pack([1, 1, 0, 0, 1])}
    b = {"accuracy": 0.4, "examples": 5, "correct": pack([1, 0, 0, 0, 1])}
    d = difference(a, b)
    # d = 0 1 0 0 0: mean 0.2; sample std √((4 · 0.04 + 0.64) / 4) = √0.2; error √0.2 / √5 = 0.2
    assert d.paired and d.value == pytest.approx(0.2) and d.error == pytest.approx(0.2)
    assert not d.significant  # 0.2 - 1.96 · 0.2 < 0: a tie
    same = difference(a, a)
    assert same.value == 0.0 and same.error == 0.0 and not same.significant


def test_unpaired_difference_uses_both_binomial_errors() -> None:
    d = difference({"accuracy": 0.8, "examples": 1000}, {"accuracy": 0.7, "examples": 1000})
    # √(0.16/1000 + 0.21/1000) = √0.00037 ≈ 0.019235; 0.1 is 5.2 errors away: significant
    assert not d.paired and d.error == pytest.approx(math.sqrt(0.00037))
    assert d.significant and d.low > 0


def test_compare_separates_beaten_tied_and_dearer() -> None:
    ref = Measurement(0, 100, {"accuracy": 0.70, "examples": 1000})
    candidates = [
        Measurement(1, 90, {"accuracy": 0.80, "examples": 1000}),  # cheaper, 5 errors better: beats
        Measurement(2, 100, {"accuracy": 0.71, "examples": 1000}),  # equal cost, 1 point: tied
        Measurement(3, 80, {"accuracy": 0.69, "examples": 1000}),  # cheaper, 1 point worse: tied
        Measurement(4, 120, {"accuracy": 0.95, "examples": 1000}),  # dearer: not compared
        Measurement(5, 50, {"accuracy": 0.50, "examples": 1000}),  # far worse: neither
    ]
    result = compare(candidates, ref)
    assert result["beaten_by"] == [1] and result["tied_with"] == [2, 3]
    assert result["best"]["number"] == 1 and result["best"]["difference"] == pytest.approx(0.10)
