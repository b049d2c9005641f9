from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sparsearch.layers import TopKBottleneck
from sparsearch.models import plan
from sparsearch.study.structure import Structure, candidate_structures
from sparsearch.study.supernet import Sampling, Supernet, configure, recalibrate_batch_norm, score_split, set_execution
from sparsearch.train import default_settings, evaluate
from tests.study.helpers import tiny_space

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    space = tiny_space()
    settings = default_settings("classification", epochs=1, steps_per_epoch=8, seed=0)
    return Supernet.train(space, candidate_structures(space)[0], settings, CPU)


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, TopKBottleneck)]


def test_configure_sets_every_block(supernet: Supernet) -> None:
    space = supernet.space
    values = supernet.values({"conv2.k": 3, "conv3.k": 7, "conv4.k": 12})
    configure(supernet.model, space, values)
    planned = [b.k for b in plan(space.proxy_config(values)).blocks]
    assert [b.k for b in _blocks(supernet.model)] == planned == [3, 7, 12]
    assert all(b.gate.k == b.k for b in _blocks(supernet.model))


@pytest.mark.parametrize("rule", ["uniform", "sandwich"])
def test_training_draws_the_configurations_of_its_rule(rule: str, monkeypatch) -> None:
    import sparsearch.study.supernet as module

    space = tiny_space()
    settings = default_settings("classification", epochs=1, steps_per_epoch=6, seed=0)
    drawn: list[tuple[int, ...]] = []

    def spy(model, space_, values):
        configure(model, space_, values)
        drawn.append(tuple(b.k for b in _blocks(model)))

    monkeypatch.setattr(module, "configure", spy)
    Supernet.train(space, candidate_structures(space)[0], settings, CPU, sampling=Sampling(rule, random=1))
    assert drawn[-1] == (12, 12, 12)  # k = C at the end
    if rule == "uniform":
        assert len(drawn) == 6 + 1  # one per step, drawn as the step begins, and k = C at the end
        assert len(set(drawn[:-1])) > 1  # k changes from step to step
    else:
        assert len(drawn) == 6 * 3 + 1  # per step: the largest, the smallest, one random
        steps = [drawn[i : i + 3] for i in range(0, 18, 3)]
        assert all(s[0] == (12, 12, 12) and s[1] == (1, 1, 1) for s in steps)
        assert len({s[2] for s in steps}) > 1


def test_distillation_loss_is_the_task_loss_against_the_teachers_probabilities() -> None:
    import torch.nn.functional as F

    from sparsearch.models import vqa_loss
    from sparsearch.train.loop import distillation_loss

    torch.manual_seed(0)
    logits, labels = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    confident = 1e4 * F.one_hot(labels, 4).float()  # a teacher sure of the labels: the hard loss
    assert torch.allclose(distillation_loss(logits, confident, "classification"), F.cross_entropy(logits, labels))
    scores = torch.rand(5, 4).clamp(0.01, 0.99)
    teacher = torch.log(scores / (1 - scores))  # sigmoid(teacher) = scores
    assert torch.allclose(distillation_loss(logits, teacher, "vqa"), vqa_loss(logits, scores), atol=1e-6)


def test_scoring_is_the_same_in_sparse_and_masked_execution(supernet: Supernet) -> None:
    space = supernet.space
    values = supernet.values({"conv2.k": 4, "conv3.k": 6, "conv4.k": 2})
    split = score_split(supernet.data, 96)
    scored = supernet.score(values, split, CPU, recalibrate=2)
    assert all(b.execution == "sparse" for b in _blocks(supernet.model))  # restored after scoring
    configure(supernet.model, space, values)
    sparse = evaluate(supernet.model, split, "classification", 64, CPU)
    assert torch.equal(sparse.predictions, scored.predictions)
    assert scored.examples == 96
    assert scored.usage["topk"]  # per-layer usage comes with the score


def test_batch_norm_recalibration_is_deterministic(supernet: Supernet) -> None:
    values = supernet.values({"conv2.k": 5, "conv3.k": 5, "conv4.k": 5})
    configure(supernet.model, supernet.space, values)
    recalibrate_batch_norm(supernet.model, supernet.data.train, 2, 32, CPU)
    first = {k: v.clone() for k, v in supernet.model.state_dict().items() if "running" in k}
    recalibrate_batch_norm(supernet.model, supernet.data.train, 2, 32, CPU)
    second = {k: v for k, v in supernet.model.state_dict().items() if "running" in k}
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not supernet.model.training


def test_recalibration_estimates_every_norm_in_either_execution(supernet: Supernet) -> None:
    """Sparse execution folds the expand norm in eval; recalibrating from it must not leave that norm's
    statistics at their reset values (0 and 1), which scored every top-k configuration too low."""
    values = supernet.values({"conv2.k": 3, "conv3.k": 3, "conv4.k": 3})
    configure(supernet.model, supernet.space, values)
    stats = {}
    for execution in ("sparse", "masked"):
        set_execution(supernet.model, execution)
        recalibrate_batch_norm(supernet.model, supernet.data.train, 2, 32, CPU)
        assert all(b.execution == execution for b in _blocks(supernet.model))  # restored
        stats[execution] = {k: v.clone() for k, v in supernet.model.state_dict().items() if "running" in k}
    set_execution(supernet.model, "sparse")
    assert all(torch.equal(stats["sparse"][k], stats["masked"][k]) for k in stats["masked"])
    for block in _blocks(supernet.model):
        assert not torch.equal(block.bn_expand.running_var, torch.ones_like(block.bn_expand.running_var))


def test_saved_supernet_loads_only_for_the_same_structure_and_settings(supernet: Supernet, tmp_path) -> None:
    path = supernet.save(tmp_path / "net")
    loaded = Supernet.load(path, supernet.space, supernet.structure, supernet.settings, supernet.data, CPU)
    assert loaded is not None
    values = supernet.values({"conv2.k": 2, "conv3.k": 9, "conv4.k": 4})
    split = score_split(supernet.data, 64)
    a = supernet.score(values, split, CPU, recalibrate=1)
    b = loaded.score(values, split, CPU, recalibrate=1)
    assert torch.equal(a.predictions, b.predictions)
    other = Structure((("routing", "relu_l1"),))
    assert Supernet.load(path, supernet.space, other, supernet.settings, supernet.data, CPU) is None
    changed = replace(supernet.settings, seed=5)
    assert Supernet.load(path, supernet.space, supernet.structure, changed, supernet.data, CPU) is None


def test_finetune_fixes_the_configuration(supernet: Supernet) -> None:
    values = supernet.values({"conv2.k": 3, "conv3.k": 3, "conv4.k": 3})
    model, accuracy = supernet.finetune(values, 2, CPU)
    assert [b.k for b in _blocks(model)] == [3, 3, 3]
    assert 0 <= accuracy <= 1
    set_execution(model, "masked")  # the copy is independent of the supernet
    assert all(b.execution == "sparse" for b in _blocks(supernet.model))


def test_set_k_refuses_out_of_range() -> None:
    block = TopKBottleneck(8, 8, 4, 2, k=2)
    with pytest.raises(ValueError, match=r"k=5 must be in 1\.\.4"):
        block.set_k(5)
    block.set_k(4)
    assert block.k == block.gate.k == 4


def test_a_supernet_trained_in_bf16_is_recorded_so_and_loads_only_as_such(tmp_path) -> None:
    """The cheaper study recipe (``--supernet-precision bf16``): a float32 study does not take a bfloat16
    supernet for its own, nor the reverse; a float32 supernet records nothing new (older ones still load)."""
    from sparsearch.train.runtime import Runtime

    space = tiny_space()
    settings = default_settings("classification", epochs=1, steps_per_epoch=2, seed=0)
    structure = candidate_structures(space)[0]
    net = Supernet.train(space, structure, settings, CPU, runtime=Runtime(CPU, precision="bf16"))
    assert net.precision == "bf16"
    path = net.save(tmp_path / "net")
    assert Supernet.load(path, space, structure, net.settings, net.data, CPU) is None
    loaded = Supernet.load(path, space, structure, net.settings, net.data, CPU, precision="bf16")
    assert loaded is not None and loaded.precision == "bf16"
    plain = Supernet.train(space, structure, settings, CPU).save(tmp_path / "plain")
    assert Supernet.load(plain, space, structure, net.settings, net.data, CPU) is not None
    assert Supernet.load(plain, space, structure, net.settings, net.data, CPU, precision="bf16") is None
