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


# -- a fake SLURM (shell scripts through SlurmSettings.commands): faults injected by files in its directory --

FAKE_SBATCH = """#!/bin/bash
# Prints the next job id; keeps its arguments and environment. A file `refuse` refuses every job.
dir=$(dirname "$0")
[ -e "$dir/refuse" ] && { echo "sbatch: error: $(cat "$dir/refuse")" >&2; exit 1; }
id=$(( $(cat "$dir/next-id" 2>/dev/null || echo 100) + 1 )); echo $id > "$dir/next-id"
echo "$@" > "$dir/sbatch-$id.args"; env > "$dir/sbatch-$id.env"
cat "$dir/initial-state" > "$dir/state-$id" 2>/dev/null || echo PENDING > "$dir/state-$id"
echo "$id"
"""
FAKE_SQUEUE = """#!/bin/bash
# `down`: slurmctld unreachable. state-<id> FORGOTTEN: squeue does not know the job.
dir=$(dirname "$0")
[ -e "$dir/down" ] && { echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1; }
for arg; do case $arg in --jobs=*) ids=${arg#--jobs=};; esac; done
for id in ${ids//,/ }; do
  state=$(cat "$dir/state-$id" 2>/dev/null || echo FORGOTTEN)
  if [ "$state" = FORGOTTEN ]; then echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; fi
  echo "$id|$state|None"
done
"""
FAKE_SCANCEL = """#!/bin/bash
dir=$(dirname "$0")
for id; do echo "$id" >> "$dir/cancelled"; echo CANCELLED > "$dir/state-$id"; done
"""
FAKE_SACCT = "#!/bin/bash\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n"


@pytest.fixture
def fake_slurm(tmp_path):
    """(directory, settings(**overrides)): SlurmSettings whose sbatch/squeue/scancel/sacct are the fakes."""
    directory = tmp_path / "fake-slurm"
    directory.mkdir()
    commands = {}
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE), ("scancel", FAKE_SCANCEL),
                       ("sacct", FAKE_SACCT)):
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
        commands[name] = str(directory / name)

    def settings(**overrides) -> SlurmSettings:
        return SlurmSettings(**{"poll_s": 0.05, "structures_per_job": 2, "commands": commands, **overrides})

    return directory, settings


def test_an_interrupt_or_a_surprise_while_submitting_leaves_no_claimed_row_running(fake_slurm, pending, tmp_path,
                                                                                     monkeypatch):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from mlip_autopipec.store import Status
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    store, ids = pending(*(fcc_cell("Cu", seed=seed) for seed in range(2)))

    def surprise(*args, **kwargs):
        raise RuntimeError("a bug in job_script")

    monkeypatch.setattr(slurm_labelling, "job_script", surprise)
    report = slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs")
    assert [store.get(row).status for row in ids] == [Status.PENDING] * 2  # failed once, retried next call
    assert all("could not be submitted: RuntimeError: a bug in job_script" in error for error in report.errors)
    monkeypatch.undo()

    submit = slurm_labelling.SlurmCommands.submit

    def submit_then_ctrl_c(self, script, log):
        submit(self, script, log)  # sbatch accepted the job, then Ctrl-C before its id came back
        raise KeyboardInterrupt

    monkeypatch.setattr(slurm_labelling.SlurmCommands, "submit", submit_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs")
    rows = [store.get(row) for row in ids]
    assert [row.status for row in rows] == [Status.PENDING] * 2
    assert [row.provenance["attempts"] for row in rows] == [2, 2]
    assert all("interrupted while submitting" in row.provenance["error"] for row in rows)


def test_a_job_interrupted_after_sbatch_returned_its_id_is_cancelled(fake_slurm, pending, tmp_path, monkeypatch):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from mlip_autopipec.store import Status
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    store, ids = pending(fcc_cell("Cu", seed=1))

    def ctrl_c(message, *args):
        if message.startswith("submitted SLURM job"):
            raise KeyboardInterrupt

    monkeypatch.setattr(slurm_labelling.log, "info", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs")
    assert (directory / "cancelled").read_text().split() == ["101"]
    assert store.get(ids[0]).status is Status.PENDING


def test_environment_keys_are_checked_when_the_file_is_read():
    with pytest.raises(ValidationError, match="not a shell variable name"):
        SlurmSettings(environment={"BAD-NAME": "1"})


def test_one_structure_raising_the_unexpected_leaves_the_rest_of_its_batch_labelled(tmp_path, monkeypatch):
    import json

    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import batch_job

    for row_id in (1, 2):
        batch_job.structure_dir(tmp_path, row_id).mkdir()
    (tmp_path / batch_job.BATCH_FILE).write_text(json.dumps({
        "rows": [1, 2], "calculator": CalculatorSpec().model_dump(mode="json"), "timeout_s": 10,
        "min_distance": 0.5, "mpi_command": None}))

    class Labelled:
        compute_seconds = 0.1

    def label_structure(atoms, spec, job_dir, timeout_s, **kwargs):
        if job_dir.name == "structure-1":
            raise KeyError("a bug in a calculator factory")
        return Labelled()

    monkeypatch.setattr(batch_job, "label_structure", label_structure)
    monkeypatch.setattr(batch_job.ase.io, "read", lambda *args, **kwargs: None)
    assert batch_job.main([str(tmp_path)]) == 0
    outcomes = [json.loads((batch_job.structure_dir(tmp_path, row) / batch_job.OUTCOME_FILE).read_text())
                for row in (1, 2)]
    assert outcomes[0]["ok"] is False and "KeyError" in outcomes[0]["error"] and outcomes[1]["ok"] is True


def test_a_controller_outage_longer_than_the_forgotten_grace_fails_no_job(fake_slurm, pending, tmp_path,
                                                                          monkeypatch, caplog):
    import threading

    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    monkeypatch.setattr(slurm_labelling, "_FORGOTTEN_GRACE_S", 0.2)
    store, [row_id] = pending(fcc_cell("Cu", seed=1))
    (directory / "down").touch()  # slurmctld unreachable from the first poll on, for 5 graces

    def controller_back():
        (directory / "state-101").write_text("COMPLETED\n")
        (directory / "down").unlink()

    timer = threading.Timer(1.0, controller_back)
    timer.start()
    with caplog.at_level("WARNING", logger=slurm_labelling.__name__):
        report = slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs",
                                                     max_attempts=1)
    timer.join()
    [job] = report.jobs
    assert job["state"] == "COMPLETED" and not (directory / "cancelled").exists()
    assert "ended COMPLETED before labelling it" in report.failed[row_id]
    assert "cannot query SLURM (jobs in flight are kept, not failed)" in caplog.text
    assert "Unable to contact slurm controller" in caplog.text


def test_a_job_squeue_has_forgotten_is_cancelled_before_its_rows_are_retried(fake_slurm, pending, tmp_path,
                                                                             monkeypatch):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    monkeypatch.setattr(slurm_labelling, "_FORGOTTEN_GRACE_S", 0.2)
    store, [row_id] = pending(fcc_cell("Cu", seed=1))
    (directory / "initial-state").write_text("FORGOTTEN\n")  # squeue: Invalid job id specified, from the start
    report = slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs",
                                                 max_attempts=1)
    [job] = report.jobs
    assert job["job_id"] == "101" and job["state"] == "UNKNOWN"
    assert (directory / "cancelled").read_text().split() == ["101"]
    assert "neither squeue nor sacct knows the job any more" in report.failed[row_id]


def test_no_secret_reaches_slurm_and_the_batch_directory_is_the_users_alone(fake_slurm, pending, tmp_path,
                                                                            monkeypatch):
    import stat

    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling.slurm import label_pending_slurm
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    secrets = {"PGPASSWORD": "pg-s3cret", "PREFECT_API_KEY": "pnu_key", "GITHUB_TOKEN": "ghp_tok",
               "aws_secret_access_key": "aws-s3cret", "MY_DB_PASSWORD": "db-s3cret"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    (directory / "initial-state").write_text("FAILED\n")
    store, [row_id] = pending(fcc_cell("Cu", seed=1))
    report = label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs", max_attempts=1)
    [job] = report.jobs
    environment = (directory / f"sbatch-{job['job_id']}.env").read_text()
    script = (tmp_path / "jobs" / job["directory"] / "job.sh").read_text()
    assert "OMP_NUM_THREADS=3" in environment
    for value in secrets.values():
        assert value not in environment and value not in script
    assert stat.S_IMODE((tmp_path / "jobs" / job["directory"]).stat().st_mode) == 0o700


@pytest.mark.parametrize("settings", [
    {"partition": "compute\n#SBATCH --account=someone-else"}, {"account": "proj 42"}, {"qos": "normal\t"},
    {"memory": "16G\nrm -rf ~"}, {"partition": ""}, {"sbatch_options": ["--exclusive\necho owned"]},
    {"sbatch_options": ["exclusive"]}, {"modules": ["gpaw/24.1\necho owned"]}, {"setup": ["cd /scratch\r"]}])
def test_a_value_that_would_end_the_sbatch_block_or_its_line_is_refused_when_the_file_is_read(settings):
    with pytest.raises(ValidationError):
        SlurmSettings(**settings)


def test_module_names_are_quoted_in_the_job_script():
    script = job_script(SlurmSettings(modules=["gpaw/24.1;touch x"]), "x", Path("/tmp/x"))
    assert "module load 'gpaw/24.1;touch x'" in script.splitlines()


def test_jobs_of_a_submitter_that_died_are_cancelled_before_recover_running_labels_their_rows_again(
        fake_slurm, pending, tmp_path, monkeypatch):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from mlip_autopipec.store import Status
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    store, ids = pending(*(fcc_cell("Cu", seed=seed) for seed in range(2)))
    with monkeypatch.context() as dying:  # killed (SIGKILL, OOM, a lost node): no clean-up at all
        dying.setattr(slurm_labelling._SlurmLabeling, "_cancel_all", lambda self, because: None)
        dying.setattr(slurm_labelling._SlurmLabeling, "_poll", lambda self: (_ for _ in ()).throw(SystemExit))
        with pytest.raises(SystemExit):
            slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs")
    assert [store.get(row).status for row in ids] == [Status.RUNNING] * 2 and not (directory / "cancelled").exists()

    (directory / "initial-state").write_text("FAILED\n")
    report = slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs",
                                                 recover_running=True, max_attempts=2)
    assert sorted(report.recovered) == ids and [job["job_id"] for job in report.jobs] == ["102"]
    assert (directory / "cancelled").read_text().split() == ["101"]  # the orphan, before its rows ran again
    slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs",
                                        recover_running=True, max_attempts=2)
    assert (directory / "cancelled").read_text().split() == ["101"]  # finished batches are left alone


def test_a_row_another_labeller_took_over_meanwhile_does_not_stop_the_labelling(fake_slurm, pending, tmp_path,
                                                                                monkeypatch):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from mlip_autopipec.store import Status
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    store, [row_id] = pending(fcc_cell("Cu", seed=1))
    (directory / "initial-state").write_text("FAILED\n")
    poll = slurm_labelling._SlurmLabeling._poll

    def taken_over_first(self):  # a labeller with recover_running failed the row while the job ran
        if store.get(row_id).status is Status.RUNNING:
            store.fail(row_id, "failed by another labeller")
        poll(self)

    monkeypatch.setattr(slurm_labelling._SlurmLabeling, "_poll", taken_over_first)
    report = slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs",
                                                 max_attempts=1)
    [attempt] = report.attempts
    assert not attempt.stored and "not stored" in attempt.error
    assert store.get(row_id).provenance["error"] == "failed by another labeller"


def test_a_job_whose_id_cannot_be_written_down_is_cancelled(fake_slurm, pending, tmp_path, monkeypatch):
    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.labeling import slurm as slurm_labelling
    from mlip_autopipec.store import Status
    from tests.labeling.conftest import fcc_cell

    directory, settings = fake_slurm
    store, [row_id] = pending(fcc_cell("Cu", seed=1))

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(slurm_labelling, "atomic_write_text", disk_full)
    report = slurm_labelling.label_pending_slurm(store, CalculatorSpec(), settings(), workdir=tmp_path / "jobs")
    assert (directory / "cancelled").read_text().split() == ["101"]
    assert "No space left on device" in report.errors[0] and store.get(row_id).status is Status.PENDING
