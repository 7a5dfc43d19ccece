"""Task: DIRECT sampling of a structure pool (mlip_autopipec.selection.direct), with the cluster
table and the pick as Prefect artifacts. Cached on the input files' digests and the settings."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, ConfigDict

from mlip_autopipec.selection.direct import direct_sample_files
from tasks.caching import DIGEST_CACHE
from tasks.publish import slug


class DirectSampleResult(BaseModel):
    """What DIRECT sampling picked and where it wrote it; the whole cluster table is in summary_file."""

    model_config = ConfigDict(frozen=True)

    frames: int
    clusters: int
    picked: int
    cluster_sizes: list[int]
    output: str  # the picked frames (extxyz)
    summary_file: str  # cluster table (JSON)
    plot_file: str  # PCA scatter (PNG)

    def output_files(self) -> list[str]:
        return [self.output, self.summary_file, self.plot_file]


@task(name="direct-sample", cache_policy=DIGEST_CACHE, persist_result=True)
def direct_sample_task(inputs: list[str], input_digests: list[str], output: str, n_clusters: int,
                       n_select: int | None = None, seed: int = 0,
                       key: str = "direct-sample") -> DirectSampleResult:
    """Pick diverse structures from `inputs` into `output`; returns the summary and the file paths.
    `input_digests` (sha256 of each input) only key the cache."""
    report = direct_sample_files(inputs, output, n_clusters, n_select, seed)
    summary = report.summary
    create_table_artifact(
        key=f"{slug(key)}-clusters",
        table=[{"cluster": cluster, "structures": size, "picked": picked} for cluster, (size, picked)
               in enumerate(zip(summary["cluster_sizes"], summary["picked_per_cluster"]))],
        description=f"DIRECT sampling: {summary['picked']} of {summary['frames']} structures "
                    f"from {summary['clusters']} clusters")
    create_markdown_artifact(
        key=f"{slug(key)}-report",
        markdown=(f"# DIRECT sampling\n\n{summary['picked']} of {summary['frames']} structures picked from "
                  f"{summary['clusters']} BIRCH clusters ({summary['clusters_requested']} requested) on "
                  f"{summary['pca_components']} principal components "
                  f"({100 * summary['pca_explained_variance']:.1f} % of the variance), seed {seed}.\n\n"
                  f"- picked frames: `{report.output.resolve()}`\n"
                  f"- cluster table: `{report.summary_file.resolve()}`\n"
                  f"- PCA scatter: `{report.plot_file.resolve()}`\n"),
        description="DIRECT sampling of a structure pool")
    return DirectSampleResult(frames=summary["frames"], clusters=summary["clusters"], picked=summary["picked"],
                              cluster_sizes=summary["cluster_sizes"], output=str(report.output),
                              summary_file=str(report.summary_file), plot_file=str(report.plot_file))
