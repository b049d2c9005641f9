from __future__ import annotations

import pytest

from sparsearch.cost import count, parse_budget
from sparsearch.models import layout


def test_resnext101_32x4d_matches_its_published_counts() -> None:
    report = count(layout("resnext101_32x4d"))
    assert report.params == 44_177_704  # torchvision's resnext101_32x4d, to the parameter
    assert 7.8e9 <= report.dense_macs <= 8.0e9  # ≈ 8.0 GMACs at 224×224 (Xie et al.)
    assert report.dense_macs == 7_969_996_800


def test_resnext29_8x64d_matches_seed_003() -> None:
    params = count(layout("gateconnect_cifar", depth=29, width=64, num_classes=100)).params
    assert abs(params - 34.4e6) / 34.4e6 < 0.02  # Table 1: 34.4M; here 34,518,948 (+0.35%)


@pytest.mark.parametrize(
    ("name", "params", "gmacs"),
    [  # torchvision's table at 224×224 (acc@1 page): parameters exactly, GMACs to its two decimals
        ("resnext50_32x4d", 25_028_904, 4.23),
        ("resnext101_32x8d", 88_791_336, 16.41),
        ("resnext101_64x4d", 83_455_272, 15.46),
    ],
)
def test_the_resnext_family_matches_torchvisions_published_counts(name: str, params: int, gmacs: float) -> None:
    report = count(layout(name))
    assert report.params == params
    assert round(report.executed_macs / 1e9, 2) == gmacs


def test_a_resnext_space_written_by_hand_gives_the_published_counts(tmp_path) -> None:
    from sparsearch.spaces import load_space

    (tmp_path / "r50.yaml").write_text(
        "name: r50\ntarget: {model: resnext, depth: 50, cardinality: 32, width: 4}\n"
        "proxy: {dataset: digits, input_size: 16, width: 0.25, depth: [1, 1, 1, 1]}\n"
        "knobs:\n  k: {per: stage, min: 1, max: cardinality}\n  routing: {choices: [softmax]}\n"
    )
    space = load_space(tmp_path / "r50.yaml")
    full = space.target_config({})
    assert count(full).params == 25_028_904 and round(count(full).executed_macs / 1e9, 2) == 4.23


def test_default_target_is_about_64_gflops_dense_and_k16_fits_50() -> None:
    dense = count(layout("resnext101_32x4d", input_size=448, head="features"))
    assert dense.dense_flops == 63_743_590_400  # ≈ 64 GFLOPs (≈ 32 GMACs): over a 50 GFLOPs budget
    k16 = count(layout("resnext101_32x4d", input_size=448, head="features", k=16, routing="softmax"))
    assert k16.dense_flops > parse_budget("50GFLOPs") > k16.executed_flops


def test_clevr_cnn_against_seed_000_table_2() -> None:
    # Seed 000 reports 5.37e7 (k = 12) and 3.21e7 (k = 6) "FLOPS" at 128×128; the paths' share halves.
    full = count(layout("clevr_cnn"))
    half = count(layout("clevr_cnn", k=6, routing="softmax"))
    assert full.executed_flops == 45_096_960
    assert half.executed_flops == 33_586_944
    # Dense cost differs by the three gates only: Linear(in -> 12) on inputs of 64, 48 and 48 channels.
    assert half.dense_flops - full.dense_flops == 2 * (64 * 12 + 48 * 12 + 48 * 12) == 3840
