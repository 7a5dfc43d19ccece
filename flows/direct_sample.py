"""DIRECT sampling: pick a diverse, labelled-or-not subset of a structure pool, no potential needed.

    python -m flows.direct_sample --input pool.extxyz --out picked.extxyz --n-clusters 50
    python -m flows.direct_sample --input a.extxyz b.pckl.gzip --out picked.extxyz --n-clusters 20 \\
        --n-select 60 --seed 1

Per-structure ACE B-projections (pyace, a small basis for the pool's elements) are standardised,
reduced by PCA and clustered by BIRCH into --n-clusters; the pick goes round-robin over the clusters
(every cluster once, most central structure first, before any cluster twice). --n-select defaults
to one per cluster.

Writes OUT (extxyz: the picked frames in pick order with their energy/forces/stress labels,
info direct_source=file:frame and direct_cluster), OUT.clusters.json (cluster sizes, picks per
cluster, PCA and BIRCH settings) and OUT.pca.png (first two principal components coloured by
cluster, picks circled), and the cluster table as a Prefect artifact.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from flows import cli
from mlip_autopipec.files import sha256_file
from tasks.caching import run_with_outputs
from tasks.direct_sample import DirectSampleResult, direct_sample_task


@flow(name="direct-sample", log_prints=True)
def direct_sample(inputs: list[str], output: str, n_clusters: int, n_select: int | None = None,
                  seed: int = 0, key: str = "direct-sample") -> DirectSampleResult:
    digests = [sha256_file(path) for path in inputs]
    result = run_with_outputs(direct_sample_task, DirectSampleResult.output_files,
                              [str(Path(p).resolve()) for p in inputs], digests, str(Path(output).resolve()),
                              n_clusters, n_select, seed, key)
    print(describe(result))
    return result


def describe(result: DirectSampleResult) -> str:
    return (f"picked {result.picked} of {result.frames} structures from {result.clusters} clusters "
            f"(sizes {result.cluster_sizes}) into {result.output}; cluster table "
            f"{result.summary_file}, PCA plot {result.plot_file}")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("direct_sample", __doc__, renames={"--output": "--out"})
    parser.add_argument("--input", required=True, nargs="+", metavar="FILE",
                        help="structure files (extxyz, Pacemaker .pckl.gzip, anything ase.io reads)")
    parser.add_argument("--out", required=True, metavar="FILE", help="extxyz file of the picked frames")
    parser.add_argument("--n-clusters", required=True, type=int, help="number of BIRCH clusters")
    parser.add_argument("--n-select", type=int, default=None, help="structures to pick (default: one per cluster)")
    parser.add_argument("--seed", type=int, default=0, help="order of the later picks within a cluster")
    parser.add_argument("--key", default="direct-sample", help="Prefect artifact key prefix")
    args = parser.parse_args(argv)
    for path in args.input:
        if not Path(path).is_file():
            print(f"error: input file {path} does not exist", file=sys.stderr)
            return 1
    if args.n_clusters < 1 or (args.n_select is not None and args.n_select < 1):
        print("error: --n-clusters and --n-select must be at least 1", file=sys.stderr)
        return 1
    try:
        with cli.prefect_api():
            result = direct_sample(args.input, args.out, args.n_clusters, args.n_select, args.seed, args.key)
    except ValueError as exc:  # InputError too: names file, frame and field
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
