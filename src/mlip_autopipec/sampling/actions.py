"""Actions: one random move of the movable atoms, with a magnitude drawn inside its block's bounds.

Every action returns a new structure and leaves fixed atoms where they were. Rigid moves act on a
*group*: a bonded fragment of movable atoms that share a tag (so an adsorbate tagged apart from
its surface moves as one piece), that is not the whole structure (moving all of it changes
nothing) and that does not close on itself through a periodic boundary (a layer or a bulk network
has no rigid rotation). Where there is no such fragment (a bulk crystal, a bare slab) the group is a
local cluster: one movable atom and its bonded movable neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from ase import Atoms, units
from ase.data import covalent_radii
from ase.geometry import find_mic
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

from mlip_autopipec.sampling.config import (DihedralTwist, Jitter, MolecularDynamics, PushPull, RigidRotate,
                                            RigidTranslate)
from mlip_autopipec.sampling.structure import fixed_mask

DEFAULT_BOND_FACTOR = 1.2
DEFAULT_BOND_CAP = 3.0


class NotApplicable(Exception):
    """The action has nothing to act on in this structure (e.g. no rotatable bond in a metal)."""


@dataclass
class ActionOutcome:
    atoms: Atoms
    magnitude: float  # in `unit`, inside the block's bounds
    unit: str
    details: dict = field(default_factory=dict)  # JSON-ready: which atoms, axis, ...


def bond_graph(atoms: Atoms, bond_factor: float = DEFAULT_BOND_FACTOR, bond_cap: float = DEFAULT_BOND_CAP) -> nx.Graph:
    """Atoms closer than bond_factor x the sum of their covalent radii (and than bond_cap Å) are bonded."""
    graph = nx.Graph()
    graph.add_nodes_from(range(len(atoms)))
    if len(atoms) < 2:
        return graph
    radii = covalent_radii[atoms.numbers] * bond_factor
    first, second, dist = neighbor_list("ijd", atoms, radii, self_interaction=False)
    keep = (first < second) & (dist <= bond_cap)
    graph.add_edges_from(zip(first[keep].tolist(), second[keep].tolist()))
    return graph


def movable_mask(atoms: Atoms) -> np.ndarray:
    return ~fixed_mask(atoms)


def _unwrapped(atoms: Atoms, indices: np.ndarray, anchor: int, graph: nx.Graph) -> np.ndarray:
    """Positions of `indices` as one unbroken piece across periodic boundaries: walking the bonds
    from `anchor`, each atom sits at the minimum image of the bond to the atom it was reached from
    (a fragment may be wider than half the cell, its bonds never are)."""
    members = set(int(i) for i in indices) | {anchor}
    placed = {anchor: atoms.positions[anchor]}
    for parent, child in nx.bfs_edges(graph.subgraph(members), anchor):
        vector, _ = find_mic(atoms.positions[child] - atoms.positions[parent], atoms.cell, atoms.pbc)
        placed[child] = placed[parent] + vector
    return np.array([placed[int(i)] for i in indices])


def _percolates(atoms: Atoms, group: np.ndarray, graph: nx.Graph) -> bool:
    """True when the group's bonds close on themselves through a periodic boundary (a layer or a
    network rather than a fragment): a rigid rotation of it is not defined."""
    if not atoms.pbc.any():
        return False
    order = [int(i) for i in group]
    piece = dict(zip(order, _unwrapped(atoms, group, order[0], graph)))
    for a, b in graph.subgraph(order).edges:
        vector, _ = find_mic(atoms.positions[b] - atoms.positions[a], atoms.cell, atoms.pbc)
        if not np.allclose(piece[b] - piece[a], vector, atol=1e-6):
            return True
    return False


def rigid_groups(atoms: Atoms, graph: nx.Graph) -> list[np.ndarray]:
    movable = movable_mask(atoms)
    tags = atoms.get_tags()
    same_tag = nx.Graph()
    same_tag.add_nodes_from(np.flatnonzero(movable).tolist())
    same_tag.add_edges_from((a, b) for a, b in graph.edges if movable[a] and movable[b] and tags[a] == tags[b])
    groups = [np.array(sorted(c)) for c in nx.connected_components(same_tag)]
    return [g for g in groups if len(g) < len(atoms) and not _percolates(atoms, g, graph)]


def _local_cluster(atoms: Atoms, graph: nx.Graph, rng: np.random.Generator) -> np.ndarray:
    movable = np.flatnonzero(movable_mask(atoms))
    if len(movable) == 0:
        raise NotApplicable("no movable atoms")
    centre = int(rng.choice(movable))
    movable_set = set(movable.tolist())
    return np.array(sorted({centre} | {n for n in graph.neighbors(centre) if n in movable_set}))


def _pick_group(atoms: Atoms, graph: nx.Graph, rng: np.random.Generator, min_size: int = 1) -> np.ndarray:
    groups = [g for g in rigid_groups(atoms, graph) if len(g) >= min_size]
    if groups:
        return groups[int(rng.integers(len(groups)))]
    cluster = _local_cluster(atoms, graph, rng)
    if len(cluster) < min_size:
        raise NotApplicable(f"no group of at least {min_size} movable atoms")
    return cluster


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Right-handed rotation about the unit vector `axis` (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * k @ k


def rigid_translate(atoms: Atoms, settings: RigidTranslate, rng: np.random.Generator, graph: nx.Graph) -> ActionOutcome:
    group = _pick_group(atoms, graph, rng)
    step = float(rng.uniform(settings.min_step, settings.max_step))
    direction = random_unit_vector(rng)
    out = atoms.copy()
    out.positions[group] += step * direction
    return ActionOutcome(out, step, "Å", {"atoms": group.tolist(), "direction": direction.tolist()})


def rigid_rotate(atoms: Atoms, settings: RigidRotate, rng: np.random.Generator, graph: nx.Graph) -> ActionOutcome:
    group = _pick_group(atoms, graph, rng, min_size=2)
    angle = float(rng.uniform(settings.min_deg, settings.max_deg))
    axis = random_unit_vector(rng)
    piece = _unwrapped(atoms, group, int(group[0]), graph)
    centre = piece.mean(axis=0)
    out = atoms.copy()
    out.positions[group] = centre + (piece - centre) @ rotation_matrix(axis, np.radians(angle)).T
    return ActionOutcome(out, angle, "deg", {"atoms": group.tolist(), "axis": axis.tolist()})


def push_pull(atoms: Atoms, settings: PushPull, rng: np.random.Generator, graph: nx.Graph) -> ActionOutcome:
    """Change one bond length by ±delta: both atoms move half of it when both are movable."""
    movable = movable_mask(atoms)
    pairs = [(a, b) for a, b in graph.edges if movable[a] or movable[b]]
    if not pairs:
        raise NotApplicable("no bonded pair with a movable atom")
    first, second = pairs[int(rng.integers(len(pairs)))]
    delta = float(rng.uniform(settings.min_delta, settings.max_delta))
    vector, distance = find_mic(atoms.positions[second] - atoms.positions[first], atoms.cell, atoms.pbc)
    unit = vector / distance
    sign = 1.0 if distance - delta <= 0.1 * distance else float(rng.choice([-1.0, 1.0]))  # never through each other
    out = atoms.copy()
    if movable[first] and movable[second]:
        out.positions[first] -= sign * delta / 2 * unit
        out.positions[second] += sign * delta / 2 * unit
    elif movable[second]:
        out.positions[second] += sign * delta * unit
    else:
        out.positions[first] -= sign * delta * unit
    return ActionOutcome(out, delta, "Å", {"atoms": [int(first), int(second)], "sign": sign,
                                           "distance_before": float(distance)})


def dihedral_twist(atoms: Atoms, settings: DihedralTwist, rng: np.random.Generator, graph: nx.Graph) -> ActionOutcome:
    """Rotate the smaller side of a single (bridge) bond j-k about the j-k axis.

    Only bonds whose moving side holds movable atoms alone, and that have a neighbour on both ends
    (so a dihedral i-j-k-l exists), qualify; rings and metals have none."""
    graph = bond_graph(atoms, settings.bond_factor, settings.bond_cap)
    movable = movable_mask(atoms)
    choices = []
    for j, k in nx.bridges(graph):
        if graph.degree[j] < 2 or graph.degree[k] < 2:
            continue
        cut = graph.copy()
        cut.remove_edge(j, k)
        side_j, side_k = nx.node_connected_component(cut, j), nx.node_connected_component(cut, k)
        axis_atom, side = (j, side_k) if len(side_k) <= len(side_j) else (k, side_j)
        pivot = k if axis_atom == j else j
        if all(movable[a] for a in side):
            choices.append((axis_atom, pivot, np.array(sorted(side))))
    if not choices:
        raise NotApplicable("no rotatable single bond with a movable side")
    axis_atom, pivot, side = choices[int(rng.integers(len(choices)))]
    angle = float(rng.uniform(settings.min_deg, settings.max_deg)) * float(rng.choice([-1.0, 1.0]))
    piece = _unwrapped(atoms, side, pivot, graph)
    axis, length = find_mic(atoms.positions[pivot] - atoms.positions[axis_atom], atoms.cell, atoms.pbc)
    rotation = rotation_matrix(axis / length, np.radians(angle))
    out = atoms.copy()
    out.positions[side] = atoms.positions[pivot] + (piece - atoms.positions[pivot]) @ rotation.T
    return ActionOutcome(out, abs(angle), "deg", {"bond": [int(axis_atom), int(pivot)], "atoms": side.tolist(),
                                                  "signed_deg": angle})


def jitter(atoms: Atoms, settings: Jitter, rng: np.random.Generator, graph: nx.Graph) -> ActionOutcome:
    movable = movable_mask(atoms)
    if not movable.any():
        raise NotApplicable("no movable atoms")
    noise = rng.normal(scale=settings.sigma, size=(int(movable.sum()), 3))
    out = atoms.copy()
    out.positions[movable] += noise
    rms = float(np.sqrt((noise ** 2).sum(axis=1).mean()))
    return ActionOutcome(out, rms, "Å", {"sigma": settings.sigma})


def molecular_dynamics(atoms: Atoms, settings: MolecularDynamics, rng: np.random.Generator, calculator) -> ActionOutcome:
    """A short MD burst at a random temperature; FixAtoms keeps fixed atoms in place."""
    if calculator is None:
        raise NotApplicable("md needs a calculator")
    temperature = float(rng.uniform(settings.min_temp_K, settings.max_temp_K))
    steps = int(rng.integers(settings.min_steps, settings.max_steps + 1))
    out = atoms.copy()
    out.calc = calculator
    MaxwellBoltzmannDistribution(out, temperature_K=temperature, rng=rng)
    if settings.integrator == "langevin":
        dynamics = Langevin(out, timestep=settings.dt_fs * units.fs, temperature_K=temperature,
                            friction=settings.friction / units.fs, fixcm=False, rng=rng)
    else:
        dynamics = VelocityVerlet(out, timestep=settings.dt_fs * units.fs)
    dynamics.run(steps)
    out.calc = None
    out.set_velocities(np.zeros((len(out), 3)))
    return ActionOutcome(out, temperature, "K", {"steps": steps, "integrator": settings.integrator})


ACTIONS = {"rigid_translate": rigid_translate, "rigid_rotate": rigid_rotate, "push_pull": push_pull,
           "dihedral_twist": dihedral_twist, "jitter": jitter}


def apply_action(name: str, settings, atoms: Atoms, rng: np.random.Generator, calculator=None,
                 graph: nx.Graph | None = None) -> ActionOutcome:
    """Apply the action `name` (a key of SamplingRules.enabled_actions()) to a copy of `atoms`."""
    if name == "md":
        return molecular_dynamics(atoms, settings, rng, calculator)
    if graph is None:
        graph = bond_graph(atoms)
    return ACTIONS[name](atoms, settings, rng, graph)
