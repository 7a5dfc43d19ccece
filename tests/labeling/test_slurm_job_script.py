"""What a SLURM user configures ends up in the job script; no cluster needed."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlip_autopipec.campaign.config import LabelingSettings
from mlip_autopipec.config.execution import SlurmSettings
from mlip_autopipec.labeling.slurm import job_script


def test_the_campaign_file_settings_reach_sbatch_and_the_job_environment():
    labeling = LabelingSettings.model_validate({"executor": "slurm", "slurm": {
        "partition": "compute", "account": "proj42", "qos": "normal", "walltime": "04:00:00", "ntasks": 8,
        "cpus_per_task": 2, "memory": "32G", "modules": ["gpaw/24.1", "openmpi/4.1"],
        "setup": ["source /home/me/venv/bin/activate"], "environment": {"OMP_NUM_THREADS": "2",
                                                                         "ASE_VASP_COMMAND": "srun vasp_std"},
        "mpi_command": "srun", "sbatch_options": ["--constraint=skylake"], "python": "/home/me/venv/bin/python"}})
    script = job_script(labeling.slurm, "mlip-label-cu-7-14", Path("/scratch/jobs/mlip-label-cu-7-14-abc"))
    for line in ["#SBATCH --job-name=mlip-label-cu-7-14", "#SBATCH --partition=compute", "#SBATCH --account=proj42",
                 "#SBATCH --qos=normal", "#SBATCH --time=04:00:00", "#SBATCH --ntasks=8",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --mem=32G", "#SBATCH --no-requeue",
                 "#SBATCH --constraint=skylake",
                 "module load gpaw/24.1", "module load openmpi/4.1", "source /home/me/venv/bin/activate",
                 "export OMP_NUM_THREADS=2", "export ASE_VASP_COMMAND='srun vasp_std'",
                 "exec /home/me/venv/bin/python -m mlip_autopipec.labeling.batch_job "
                 "/scratch/jobs/mlip-label-cu-7-14-abc"]:
        assert line in script.splitlines(), line
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash" and lines.index("module load gpaw/24.1") > lines.index("#SBATCH --mem=32G")


def test_settings_are_checked_before_anything_is_submitted():
    assert LabelingSettings.model_validate({"executor": "slurm"}).slurm == SlurmSettings()
    assert LabelingSettings().slurm is None
    with pytest.raises(ValidationError, match="slurm: used only with executor: slurm"):
        LabelingSettings.model_validate({"slurm": {"partition": "compute"}})
    with pytest.raises(ValidationError, match="extra"):
        SlurmSettings.model_validate({"partion": "compute"})
    with pytest.raises(ValueError, match="not a shell variable name"):
        job_script(SlurmSettings(environment={"BAD-NAME": "1"}), "x", Path("/tmp/x"))


def test_a_job_sbatch_refuses_fails_one_batch_and_stops_submitting(tmp_path, pending):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling.slurm import label_pending_slurm
    from mlip_autopipec.store import Status
    from tests.labeling.conftest import fcc_cell

    refusing = tmp_path / "sbatch"
    refusing.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    refusing.chmod(0o755)
    store, [first, second, third] = pending(*(fcc_cell("Cu", seed=seed) for seed in range(3)))
    report = label_pending_slurm(store, CalculatorSpec(), SlurmSettings(partition="gpu", structures_per_job=1,
                                                                         commands={"sbatch": str(refusing)}),
                                 workdir=tmp_path / "jobs")
    [error] = report.errors
    assert error.startswith(f"structure {first} (attempt 1): the job could not be submitted: sbatch ")
    assert "invalid partition specified: gpu" in error and not report.jobs
    assert [store.get(row).status for row in (first, second, third)] == [Status.PENDING] * 3  # retried next call
    assert [store.get(row).provenance.get("attempts", 0) for row in (first, second, third)] == [1, 0, 0]


@pytest.mark.parametrize("walltime", ["90", "02:00:00", "1-00:00:00", "1-12", "30:00"])
def test_walltimes_in_slurm_formats_are_accepted(walltime):
    assert SlurmSettings(walltime=walltime).walltime == walltime


def test_a_walltime_slurm_would_refuse_is_refused_when_the_file_is_read():
    with pytest.raises(ValidationError, match="walltime"):
        SlurmSettings(walltime="2 hours")
