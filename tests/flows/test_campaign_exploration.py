"""The campaign's MD walkers fanned out on a Dask cluster (`execution: {task_runner: dask}`)."""

from pathlib import Path

import ase.io
import numpy as np
import yaml

from flows.active_learning import explore_walkers_flow
from mlip_autopipec.campaign import steps
from mlip_autopipec.campaign.config import CampaignConfig
from tasks.campaign import explore_task
from tasks.runners import build_task_runner
from tests.campaign.test_config_and_records import MINIMAL
from tests.campaign.test_steps import _private_copy


def test_walkers_on_a_temporary_dask_cluster_explore_as_one_task_does(generation_1, tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(MINIMAL.replace("substitute: {Ni: 0.25}", "") + yaml.safe_dump({
        "execution": {"task_runner": "dask", "workers": 2},
        "exploration": {"temperatures_K": [300, 1200], "walkers_per_temperature": 1, "steps": 30,
                        "record_every": 5}}))
    settings = CampaignConfig.load(path)
    artifact = _private_copy(generation_1, tmp_path)  # exploration writes into the generation's directory
    arguments = (str(Path(artifact.generation_dir) / "artifact.json"), artifact.digest, 5)

    walkers = explore_walkers_flow.with_options(task_runner=build_task_runner(settings.execution))(
        settings.file, settings.digest, *arguments)
    fanned_out = explore_task(settings, *arguments, md_walkers=walkers)
    positions = [ase.io.read(trajectory, ":")[-1].positions for trajectory in fanned_out.trajectories]

    in_one_task = steps.explore(settings, artifact, 5).summary(settings.selection.lower)
    assert [str(walker.trajectory) for walker in walkers] == in_one_task.trajectories == fanned_out.trajectories
    assert fanned_out == in_one_task and fanned_out.walkers == 2 and fanned_out.frames >= 2
    for trajectory, before in zip(in_one_task.trajectories, positions):
        np.testing.assert_array_equal(ase.io.read(trajectory, ":")[-1].positions, before)
