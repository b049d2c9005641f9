"""A supernet's training resumes where it stopped: the sandwich and the uniform rule, their sampling
generator included, end with the weights an uninterrupted training ends with, bit for bit (CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsearch.study.structure import candidate_structures
from sparsearch.study.supernet import Sampling, Supernet
from sparsearch.train import default_settings
from tests.study.helpers import tiny_space

CPU = torch.device("cpu")


class Stop(Exception):
    pass


@pytest.mark.parametrize("rule", ["sandwich", "uniform"])
def test_a_supernet_training_stopped_midway_resumes_to_the_same_weights(tmp_path: Path, rule: str) -> None:
    space = tiny_space()
    structure = candidate_structures(space)[0]
    settings = default_settings("classification", epochs=2, steps_per_epoch=5, seed=0)
    sampling = Sampling(rule, random=1)
    whole = Supernet.train(space, structure, settings, CPU, sampling=sampling).model.state_dict()

    def stop_at_7(info) -> None:
        if info.step_global == 7:
            raise Stop

    state = tmp_path / "net.resume"
    with pytest.raises(Stop):
        Supernet.train(
            space, structure, settings, CPU, sampling=sampling, on_step=stop_at_7, save_at=state, save_every=3
        )
    assert state.is_dir()  # saved after step 6, in the second epoch
    resumed = Supernet.train(space, structure, settings, CPU, sampling=sampling, save_at=state, save_every=3)
    assert all(torch.equal(whole[k], v) for k, v in resumed.model.state_dict().items())
    assert not state.exists()
