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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
