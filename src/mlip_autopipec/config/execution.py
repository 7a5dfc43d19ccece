"""Where fanned-out work (one labelling job per structure, one MD walker per exploration task)
runs: Prefect's thread pool, or Dask.

    execution:
      task_runner: dask            # threads (default) or dask
      workers: 4                   # threads, or local Dask worker processes; also jobs in flight
      dask_address: tcp://scheduler:8786   # an existing cluster; else a temporary one is started
      dask_cluster_class: dask_jobqueue.SLURMCluster      # instead of distributed.LocalCluster
      dask_cluster_kwargs: {cores: 8, memory: 32GB, walltime: "02:00:00"}
      dask_adapt_kwargs: {minimum: 0, maximum: 20}

Library side only: tasks/runners.py turns this into a Prefect task runner.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ExecutionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="threads: Prefect's ThreadPoolTaskRunner in this process; dask: prefect-dask's "
                               "DaskTaskRunner on a temporary cluster or the one at dask_address")
    workers: int = Field(2, ge=1, description="threads, or workers of the temporary LocalCluster; also how many "
                                              "structures are in flight at once")
    dask_address: str | None = Field(None, description="scheduler of a running Dask cluster, e.g. tcp://host:8786")
    dask_cluster_class: str | None = Field(
        None, description="dotted name of the temporary cluster's class, e.g. dask_jobqueue.SLURMCluster; "
                          "default distributed.LocalCluster with `workers` single-threaded worker processes")
    dask_cluster_kwargs: dict[str, Any] = Field(default_factory=dict,
                                                description="keyword arguments of the temporary cluster")
    dask_adapt_kwargs: dict[str, Any] = Field(default_factory=dict,
                                              description="cluster.adapt(...) arguments, e.g. {minimum: 0, "
                                                          "maximum: 20}; empty: no adaptive scaling")

    @model_validator(mode="after")
    def _dask_keys_need_dask(self) -> ExecutionSettings:
        dask_keys = [name for name in ("dask_address", "dask_cluster_class", "dask_cluster_kwargs",
                                       "dask_adapt_kwargs") if getattr(self, name)]
        if self.task_runner != "dask" and dask_keys:
            raise ValueError(f"{', '.join(dask_keys)}: used only with task_runner: dask, "
                             f"but task_runner is {self.task_runner!r}")
        if self.dask_address and len(dask_keys) > 1:
            raise ValueError("dask_address connects to a running cluster; dask_cluster_class, "
                             "dask_cluster_kwargs and dask_adapt_kwargs describe a temporary one: give one or "
                             "the other")
        return self


class SlurmSettings(BaseModel):
    """Labelling as SLURM batch jobs: one `sbatch` job per batch of `structures_per_job` structures.

        labeling:
          executor: slurm
          slurm:
            partition: compute
            account: proj123
            walltime: "02:00:00"        # per job: room for structures_per_job x the labelling timeout
            ntasks: 4                   # MPI ranks of each DFT calculation (sbatch --ntasks)
            structures_per_job: 8
            max_jobs: 20                # jobs queued or running at once
            modules: [gpaw/24.1]        # `module load` lines in the job script
            setup: ["source /home/me/venv/bin/activate"]
            environment: {OMP_NUM_THREADS: "1"}
            mpi_command: "srun"         # prefix of the labelling worker: srun, mpiexec -n 4, ...

    The job directory (labeling.workdir) must be on a filesystem the compute nodes share; the store
    need not be reachable from them: the jobs write result files, the submitting process stores them.
    Library side only: mlip_autopipec.labeling.slurm submits and watches the jobs.
    """

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="sbatch --partition; default: the cluster's default")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    walltime: str = Field("01:00:00", pattern=r"^(\d+-)?\d+(:\d\d?){0,2}$",
                          description="sbatch --time of each job: minutes, [D-]HH:MM[:SS], e.g. 02:00:00 or 1-00:00:00")
    ntasks: int = Field(1, ge=1, description="sbatch --ntasks: MPI ranks per DFT calculation")
    cpus_per_task: int = Field(1, ge=1, description="sbatch --cpus-per-task (threads per rank)")
    memory: str | None = Field(None, description="sbatch --mem, e.g. 16G")
    structures_per_job: int = Field(8, ge=1, description="structures labelled one after another in one job")
    max_jobs: int = Field(4, ge=1, description="jobs queued or running at once")
    job_name: str = Field("mlip-label", pattern=r"^[A-Za-z0-9._-]+$",
                          description="prefix of the job names: <job_name>-<campaign>-<first structure id>")
    modules: list[str] = Field(default_factory=list, description="`module load` each (quoted), first in the job "
                                                                 "script")
    setup: list[str] = Field(default_factory=list, description="shell lines run before labelling (activate an "
                                                               "environment, cd, ulimit); trusted: they go into "
                                                               "job.sh as they are")
    environment: dict[str, str] = Field(default_factory=dict, description="exported in the job script, e.g. "
                                                                          "ASE_VASP_COMMAND or OMP_NUM_THREADS")
    mpi_command: str | None = Field(None, description="launches each labelling worker, e.g. `srun` or "
                                                      "`mpiexec -n 4`; unset: one serial worker process")
    python: str | None = Field(None, description="interpreter on the compute nodes; default the submitting one")
    sbatch_options: list[str] = Field(default_factory=list, description="further sbatch options, e.g. "
                                                                        "['--constraint=skylake', '--exclusive']")
    pending_timeout_s: float = Field(3600.0, gt=0, description="a job that has not started (held, no resources, "
                                                               "drained nodes) after this long is cancelled and "
                                                               "its structures fail (retried)")
    poll_s: float = Field(5.0, gt=0, description="seconds between squeue polls")
    commands: dict[Literal["sbatch", "squeue", "scancel", "scontrol", "sacct"], str] = Field(
        default_factory=dict, description="other paths or wrappers for the SLURM commands")

    @field_validator("partition", "account", "qos", "memory")
    @classmethod
    def _one_slurm_word(cls, value: str | None) -> str | None:
        # It goes into an #SBATCH line: a newline would end the #SBATCH block, a space the option.
        if value is not None and (not value or re.search(r"[\s\x00-\x1f\x7f]", value)):
            raise ValueError(f"{value!r}: a SLURM name, without spaces or control characters")
        return value

    @field_validator("sbatch_options", "modules", "setup")
    @classmethod
    def _one_line_each(cls, values: list[str]) -> list[str]:
        for value in values:
            if re.search(r"[\x00-\x1f\x7f]", value):
                raise ValueError(f"{value!r}: one line each, without newlines or control characters")
        return values

    @field_validator("sbatch_options")
    @classmethod
    def _options(cls, options: list[str]) -> list[str]:
        for option in options:
            if not option.startswith("-"):
                raise ValueError(f"{option!r} is not an sbatch option (e.g. --constraint=skylake)")
        return options

    @field_validator("environment")
    @classmethod
    def _shell_variable_names(cls, environment: dict[str, str]) -> dict[str, str]:
        for key in environment:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a shell variable name")
        return environment
