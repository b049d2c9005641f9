from __future__ import annotations

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
