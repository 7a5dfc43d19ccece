"""DIRECT sampling: a diverse subset of a structure pool, without any trained potential.

    selection = direct_sample(frames, n_clusters=50, n_select=100, seed=0)
    report = direct_sample_files(["pool.extxyz"], "picked.extxyz", n_clusters=50)   # + JSON + PNG
    atoms = select_initial_training_set(["pool.extxyz"], count=40, seed=0)         # campaign's generation 0

Steps (after Chen et al., "DIRECT sampling", npj Comput. Mater. 2024):
1. per-structure descriptor: ACE B-projections of every atom from a small ACE basis built for the pool's
   elements (its functions need no fitted coefficients), averaged per structure; one block per element
   (sum over that element's atoms / all atoms), so composition counts too;
2. standardisation, then PCA keeping the components with eigenvalue > 1 (Kaiser's rule, as DIRECT does);
3. BIRCH clustering (scikit-learn) into `n_clusters`; the BIRCH threshold is halved until it yields at
   least that many subclusters, so near-identical structures never hide distinct ones;
4. stratified pick, round-robin over clusters: every cluster gives its most central structure before any
   cluster gives a second one; later picks within a cluster are in a seeded random order;
5. every element of the pool is in the picks (when there are at least as many picks as elements): for an
   element none holds, the structure with most atoms of it replaces the latest pick that is not the only
   holder of another element. A rare element (a dopant in a few structures) can sit in a big cluster and
   be missed by step 4, and a first training set without it cannot fit it at all.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.problems import FrameProblem, InputError
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.files import atomic_path, atomic_write_text

SUMMARY_SUFFIX = ".clusters.json"
PLOT_SUFFIX = ".pca.png"


@dataclass(frozen=True)
class DescriptorSettings:
    """The ACE basis of the descriptor; small on purpose: it only has to tell environments apart."""

    cutoff: float = 5.0  # Å
    nradmax_by_orders: tuple[int, ...] = (8, 3, 2)
    lmax_by_orders: tuple[int, ...] = (0, 2, 1)
    batch_size: int = 200  # structures per B-projection call: bounds memory on large pools


@dataclass
class DirectSelection:
    """What `direct_sample` decided; frame indices refer to the input order."""

    picked: list[int]  # in pick order: the first len(cluster_sizes) cover every cluster once
    cluster_of_frame: np.ndarray  # (frames,) cluster label, 0..clusters-1, largest cluster first
    coordinates: np.ndarray  # (frames, components) PCA scores of the standardised descriptors
    explained_variance_ratio: np.ndarray  # of the kept components
    birch_threshold: float
    clusters_requested: int
    added_for_elements: dict[str, int] = field(default_factory=dict)  # element -> frame picked for it (step 5)

    @property
    def cluster_sizes(self) -> list[int]:
        return np.bincount(self.cluster_of_frame).tolist()

    def summary(self) -> dict:
        picked_per_cluster = np.bincount(self.cluster_of_frame[self.picked], minlength=len(self.cluster_sizes))
        return {
            "frames": int(len(self.cluster_of_frame)),
            "clusters_requested": self.clusters_requested,
            "clusters": len(self.cluster_sizes),
            "picked": len(self.picked),
            "pca_components": int(self.coordinates.shape[1]),
            "pca_explained_variance": float(np.sum(self.explained_variance_ratio)),
            "birch_threshold": self.birch_threshold,
            "cluster_sizes": self.cluster_sizes,
            "picked_per_cluster": picked_per_cluster.tolist(),
            "added_for_elements": dict(self.added_for_elements),
        }


# -- descriptors ---------------------------------------------------------------------------------

def descriptor_basis(elements: Sequence[str], settings: DescriptorSettings = DescriptorSettings()):
    """A pyace BBasisConfiguration for `elements`, with every block (unary, binary, ...) of the
    requested radial and angular orders and zero coefficients."""
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    create_basis = import_pyace("pyace.multispecies_basisextension").create_multispecies_basis_config
    config = {
        "deltaSplineBins": 0.001,
        "elements": sorted(set(elements)),
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1], "ndensity": 1}},
        "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": settings.cutoff, "dcut": 0.01}},
        "functions": {"ALL": {"nradmax_by_orders": list(settings.nradmax_by_orders),
                              "lmax_by_orders": list(settings.lmax_by_orders)}},
    }
    return create_basis(config)


def structure_descriptors(frames: Sequence[Atoms], settings: DescriptorSettings = DescriptorSettings(),
                          elements: Sequence[str] | None = None) -> np.ndarray:
    """(frames, features): per element, the B-projections of its atoms summed and divided by the
    structure's atom count; the element blocks side by side (alphabetical element order)."""
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    activelearning = import_pyace("pyace.activelearning")
    elements = sorted(set(elements or [s for atoms in frames for s in atoms.get_chemical_symbols()]))
    basis = activelearning.convert_to_bbasis(descriptor_basis(elements, settings))
    functions = activelearning.compute_number_of_functions(basis)
    species_of = basis.elements_to_index_map
    offsets = np.concatenate([[0], np.cumsum([functions[species_of[e]] for e in elements])])
    block_of_species = {species_of[e]: slice(offsets[i], offsets[i + 1]) for i, e in enumerate(elements)}
    descriptors = np.zeros((len(frames), int(offsets[-1])))
    for start in range(0, len(frames), settings.batch_size):
        batch = list(frames[start:start + settings.batch_size])
        projections, structure_of = activelearning.compute_B_projections(
            basis, batch, return_structure_ind_dict=True)
        for species, rows in projections.items():
            if len(rows):
                np.add.at(descriptors[:, block_of_species[species]], start + structure_of[species], rows)
    return descriptors / np.array([len(atoms) for atoms in frames], dtype=float)[:, None]


# -- reduction, clustering, pick -----------------------------------------------------------------

def principal_components(descriptors: np.ndarray, n_components: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PCA scores of the standardised descriptors and the explained-variance ratios of the kept
    components; by default those with eigenvalue > 1 (at least 2 where the data allow)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    standardised = StandardScaler().fit_transform(descriptors)
    if not np.any(standardised):  # one structure, or all alike: nothing to tell apart
        return np.zeros((len(standardised), 1)), np.zeros(1)
    most = min(standardised.shape)
    pca = PCA(n_components=most, svd_solver="full").fit(standardised)
    if n_components is None:
        n_components = max(min(2, most), int(np.sum(pca.explained_variance_ > 1.0)))
    n_components = max(1, min(n_components, most))
    scores = pca.transform(standardised)[:, :n_components]
    return scores, pca.explained_variance_ratio_[:n_components]


def birch_clusters(coordinates: np.ndarray, n_clusters: int, threshold: float = 0.5,
                   min_threshold: float = 1e-6) -> tuple[np.ndarray, float]:
    """BIRCH labels (0 = largest cluster) and the threshold used: halved from `threshold` until BIRCH
    finds at least `n_clusters` subclusters. With no more distinct points than clusters, each
    distinct point is its own cluster."""
    from sklearn.cluster import Birch
    from sklearn.exceptions import ConvergenceWarning

    distinct, inverse = np.unique(coordinates, axis=0, return_inverse=True)
    if len(distinct) <= n_clusters:  # every distinct point is a cluster of its own
        return _relabel_by_size(inverse.reshape(-1)), threshold
    while True:
        birch = Birch(threshold=threshold, n_clusters=None).fit(coordinates)
        if len(birch.subcluster_centers_) >= n_clusters or threshold / 2 < min_threshold:
            break
        threshold /= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than clusters: we report it
        labels = birch.set_params(n_clusters=n_clusters).partial_fit().predict(coordinates)
    return _relabel_by_size(labels), threshold


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Labels 0..k-1 with 0 the largest cluster (ties: the cluster seen first)."""
    unique, first_seen, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(unique)), key=lambda i: (-counts[i], first_seen[i]))
    mapping = {unique[old]: new for new, old in enumerate(order)}
    return np.array([mapping[label] for label in labels], dtype=int)


def stratified_pick(coordinates: np.ndarray, cluster_of_frame: np.ndarray, n_select: int,
                    seed: int = 0) -> list[int]:
    """Round-robin over clusters (largest first): round r takes the r-th structure of every cluster
    that has one. A cluster's first structure is its most central; the rest follow in a random
    order drawn from `seed`."""
    rng = np.random.default_rng(seed)
    queues = []
    for cluster in range(int(cluster_of_frame.max()) + 1):
        members = np.flatnonzero(cluster_of_frame == cluster)
        distances = np.linalg.norm(coordinates[members] - coordinates[members].mean(axis=0), axis=1)
        central = members[int(np.argmin(distances))]
        rest = rng.permutation(members[members != central])
        queues.append([int(central), *map(int, rest)])
    picked: list[int] = []
    for position in range(max(map(len, queues))):
        for queue in queues:
            if position < len(queue) and len(picked) < n_select:
                picked.append(queue[position])
    return picked


def direct_sample(frames: Sequence[Atoms], n_clusters: int, n_select: int | None = None, seed: int = 0,
                  settings: DescriptorSettings = DescriptorSettings(), n_components: int | None = None,
                  birch_threshold: float = 0.5) -> DirectSelection:
    """Pick `n_select` (default: one per cluster) diverse structures from `frames`."""
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if n_select is not None and n_select < 1:
        raise ValueError(f"n_select must be at least 1, got {n_select}")
    if not frames:
        raise ValueError("no structures to sample from")
    if n_select is not None and n_select > len(frames):
        raise ValueError(f"n_select = {n_select}, but the pool holds only {len(frames)} structures: "
                         f"ask for at most {len(frames)}")
    coordinates, explained = principal_components(structure_descriptors(frames, settings), n_components)
    cluster_of_frame, threshold = birch_clusters(coordinates, n_clusters, birch_threshold)
    clusters = int(cluster_of_frame.max()) + 1
    picked = stratified_pick(coordinates, cluster_of_frame, clusters if n_select is None else n_select, seed)
    picked, added = cover_every_element(frames, picked)
    return DirectSelection(picked, cluster_of_frame, coordinates, explained, threshold, n_clusters, added)


def cover_every_element(frames: Sequence[Atoms], picked: list[int]) -> tuple[list[int], dict[str, int]]:
    """`picked` with every element of `frames` in at least one pick (as far as the number of picks
    allows), and element -> the frame added for it. For an element none of the picks holds, the
    frame with most atoms of it (the first on ties) replaces the latest pick whose elements other
    picks still cover."""
    picked = list(picked)
    counts = [Counter(atoms.get_chemical_symbols()) for atoms in frames]
    added: dict[str, int] = {}
    for element in sorted(set().union(*counts)):
        if any(element in counts[i] for i in picked):
            continue
        holder = max((i for i in range(len(frames)) if i not in picked), key=lambda i: (counts[i][element], -i))
        for position in range(len(picked) - 1, -1, -1):
            others = [i for j, i in enumerate(picked) if j != position]
            if picked[position] not in added.values() and \
                    set(counts[picked[position]]) <= {e for i in others for e in counts[i]}:
                picked[position] = holder
                added[element] = holder
                break
    return picked, added


# -- files ---------------------------------------------------------------------------------------

@dataclass
class DirectSampleReport:
    output: Path  # the picked frames (extxyz, labels kept)
    summary_file: Path  # cluster sizes and picks (JSON)
    plot_file: Path  # PCA scatter coloured by cluster, picks marked (PNG)
    summary: dict = field(default_factory=dict)


def read_pool(paths: Sequence[str | os.PathLike]) -> tuple[list[Atoms], list[str]]:
    """Every structure of every file (labels, where present, ride along as calculator results) and
    its source `file:frame`. Raises InputError naming the file, frame and field of the first
    unusable frame: a pool that silently loses structures would bias the selection."""
    frames, sources = [], []
    for path in paths:
        for index, item in read_labelled_frames(path):
            if isinstance(item, FrameProblem):
                raise InputError(item)
            problem = _geometry_problem(str(path), index, item)
            if problem is not None:
                raise InputError(problem)
            frames.append(item.to_atoms())
            sources.append(f"{Path(path).name}:{index}")
    if not frames:
        raise ValueError(f"no structures in {', '.join(map(str, paths))}")
    return frames, sources


def _geometry_problem(path: str, index: int, frame: LabelledFrame) -> FrameProblem | None:
    atoms = frame.atoms
    if len(atoms) == 0:
        return FrameProblem(path, index, "positions", "the structure has no atoms")
    if not np.isfinite(atoms.positions).all():
        return FrameProblem(path, index, "positions", "not finite (NaN or inf)")
    if atoms.pbc.all() and abs(atoms.cell.volume) < 1e-6:
        return FrameProblem(path, index, "cell", "periodic structure with a zero-volume cell")
    return None


def direct_sample_files(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, n_clusters: int,
                        n_select: int | None = None, seed: int = 0,
                        settings: DescriptorSettings = DescriptorSettings()) -> DirectSampleReport:
    """Read the pool, pick, and write `output` (extxyz: the picks in pick order, each with
    info['direct_source'] = 'file:frame' and info['direct_cluster']), `output` + .clusters.json and
    `output` + .pca.png. Nothing is written when the input is unusable."""
    frames, sources = read_pool(inputs)
    selection = direct_sample(frames, n_clusters, n_select, seed, settings)
    output = Path(output)
    picked_atoms = []
    for index in selection.picked:
        atoms = frames[index]
        atoms.info["direct_source"] = sources[index]
        atoms.info["direct_cluster"] = int(selection.cluster_of_frame[index])
        picked_atoms.append(atoms)
    summary = {**selection.summary(), "seed": seed, "inputs": [str(Path(p).resolve()) for p in inputs],
               "picks": [{"source": sources[i], "cluster": int(selection.cluster_of_frame[i])}
                         for i in selection.picked]}
    import ase.io

    with atomic_path(output) as tmp:
        ase.io.write(tmp, picked_atoms, format="extxyz")
    summary_file = atomic_write_text(Path(f"{output}{SUMMARY_SUFFIX}"), json.dumps(summary, indent=1) + "\n")
    plot_file = cluster_scatter(selection, Path(f"{output}{PLOT_SUFFIX}"),
                                title=f"{len(frames)} structures, {summary['clusters']} clusters, "
                                      f"{len(selection.picked)} picked")
    return DirectSampleReport(output, summary_file, plot_file, summary)


def select_initial_training_set(pool_files: Sequence[str | os.PathLike], count: int, seed: int = 0,
                                n_clusters: int | None = None) -> list[Atoms]:
    """The campaign's generation 0 from a raw pool: `count` diverse structures (one per cluster,
    `n_clusters` defaults to `count`), labels kept where the pool has them."""
    frames, sources = read_pool(pool_files)
    selection = direct_sample(frames, n_clusters or count, count, seed)
    picked = []
    for index in selection.picked:
        frames[index].info["direct_source"] = sources[index]
        picked.append(frames[index])
    return picked


def cluster_scatter(selection: DirectSelection, target: str | os.PathLike, title: str = "") -> Path:
    """First two principal components, coloured by cluster, picks circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coordinates = selection.coordinates
    second = coordinates[:, 1] if coordinates.shape[1] > 1 else np.zeros(len(coordinates))
    figure, axis = plt.subplots(figsize=(6.4, 5.2))
    axis.scatter(coordinates[:, 0], second, c=selection.cluster_of_frame, cmap="tab20", s=12, alpha=0.8)
    axis.scatter(coordinates[selection.picked, 0], second[selection.picked], s=60, facecolors="none",
                 edgecolors="black", linewidths=1.2, label=f"picked ({len(selection.picked)})")
    ratio = selection.explained_variance_ratio
    axis.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f} % of variance)")
    axis.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f} % of variance)" if len(ratio) > 1 else "PC 2 (not kept)")
    axis.legend(loc="best", fontsize=8)
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return Path(target)
