"""Ice next to water, side by side with CHILL+: interfaces, seeded nuclei, supercooled liquids.

Data: scripts/make_interface_md.py (mW; runs/interfaces/) and, when present, the coexistence boxes (TIP4P/Ice
at 250 K, TIP4P/2005 at 240 K), the atomistic seeds (TIP4P/Ice, R = 10 and 12 A, 240 K) and the deeply supercooled
liquids (TIP4P/Ice at 220 K, TIP4P/2005 at 200 K) of scripts/make_md_snapshots.py (runs/md/coexistence_*,
seed_*, liquid_220K, liquid_tip4p2005_200K). Ground truth comes from the construction: the
molecules held crystalline while the rest melted (slabs), the seed molecules (nuclei), nothing (liquids).

For every frame the positions are denoised once; then
  ours      the model's full pipeline (classifier + boundary step, `BoundarySettings` of the model, then
            "other crystal"; its far-liquid column counts only molecules labelled liquid),
  route a   the boundary step without its route (b) (min_ordered_ice_bonds 0: the release before it),
  previous  the classifier alone (the boundary step off: what the model gave before it existed),
  CHILL+    OVITO's ChillPlusModifier (cutoff 3.5 A) on the raw positions; every class but "other" counts
            as ice (hexagonal, cubic, interfacial ice, hydrate, interfacial hydrate).

Printed per system: the fraction of the ice labelled ice in 1 A bins of depth below the interface plane and
in total (ours also "of the right phase"), the liquid more than 4 A beyond the plane labelled liquid; for
seeds, the seed labelled ice, ice labels outside the seed relative to the seed size, and the largest ice
cluster (3.5 A), then how much of the seed is ordered at all (its outer 2 A is interface by construction
and disorders after release): the seed molecules that pass route (a)'s ordered-shell test on the denoised
positions, and that CHILL+ calls ice on the denoised positions; and, for the mW seeds whose inherent structures
scripts/make_interface_md.py wrote (NAME.inherent.lammpstrj), the nucleus there (:func:`inherent_nucleus`) and
both tools against it (labelled ice, labels outside it, largest cluster per nucleus molecule); for liquids,
the false-ice fraction and the
largest false-ice cluster; for ice with free surfaces (ice/vapour, surface_*), the fraction labelled ice by
depth below the outermost molecular layer (every molecule started as ice Ih; near the melting point the
outer layers premelt, so there the ice fraction is what to compare with CHILL+, not a score).

Usage: python benchmarks/interfaces.py [--data runs/interfaces] [--md runs/md] [--model M] [--only NAME ...]
       [--rounds N] [--min-ordered-bonds K] [--min-ice-neighbours M] [--min-ordered-ice-bonds B]
       [--support-radius R] [--min-support F] [--small-cluster-rounds N] [--small-cluster-size M]
       (other boundary-step settings)
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.boundary import BoundarySettings, Shells, extend_ice, ordered_shells
from icephase_lmp.other_crystal import REPEAT_TEST_ITERATIONS, label_other_crystal, liquid_pairs, second_look
from icephase_lmp.clusters import ice_clusters
from icephase_lmp.denoise import denoise
from icephase_lmp.model_file import load_model
from icephase_lmp.phase_vote import vote_phases
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL
from icephase_lmp.trajectory import read_frames
from icephase_lmp.pipeline import run_ring_census, run_site_census

REPO = Path(__file__).resolve().parents[1]
BINS = np.arange(0.0, 11.0, 1.0)  # depth bins (A) below the interface plane
LIQUID_BEYOND = 4.0  # A: liquid this far beyond the plane must be labelled liquid
EXPECTED = {"1h": "Ih", "1c": "Ic", "CS1": "sI", "Ih": "Ih"}


def chill_plus_types(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """OVITO's CHILL+ class of each molecule (``ChillPlusModifier.Type``), cutoff 3.5 A."""
    from ovito.data import DataCollection
    from ovito.modifiers import ChillPlusModifier
    from ovito.pipeline import Pipeline, StaticSource

    data = DataCollection()
    data.create_cell(np.column_stack([cell.T, np.zeros(3)]), pbc=(True, True, True))
    particles = data.create_particles(count=len(positions))
    particles.create_property("Position", data=positions)
    pipeline = Pipeline(source=StaticSource(data=data))
    pipeline.modifiers.append(ChillPlusModifier(cutoff=3.5))
    return np.asarray(pipeline.compute().particles["Structure Type"])


def chill_plus(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """True where OVITO's CHILL+ calls the molecule anything but "other"."""
    from ovito.modifiers import ChillPlusModifier

    return chill_plus_types(positions, cell) != ChillPlusModifier.Type.OTHER


def inherent_nucleus(frame) -> np.ndarray:
    """True for the molecules of the crystalline nucleus in a frame's inherent structure (its energy minimised:
    no thermal motion, and no model of ours in it): the largest cluster (3.5 A) of the molecules that CHILL+
    calls hexagonal, cubic or interfacial ice there. Hydrate-like classes are left out: the minimised liquid
    holds scattered cage fragments, and the seeds are ice Ih."""
    from ovito.modifiers import ChillPlusModifier

    kinds = ChillPlusModifier.Type
    types = chill_plus_types(frame.positions, frame.cell)
    ice = np.isin(types, [kinds.HEXAGONAL_ICE, kinds.CUBIC_ICE, kinds.INTERFACIAL_ICE])
    return ice_clusters(ice.astype(np.int32), frame.positions, frame.cell, frame.pbc, 3.5).ids == 1


class Labeller:
    def __init__(self, model_path: str | None, **boundary):
        self.model = load_model(model_path)
        clf = self.model.classifier
        self.threshold = clf.threshold(clf.metric, denoised=True)
        self.boundary = replace(clf.boundary, **{k: v for k, v in boundary.items() if v is not None})

    def frame(self, f) -> dict:
        # what the offline pipeline runs (the compiled message kernel where the model file allows)
        d = denoise(self.model.offline_denoiser(), f.positions, f.cell, f.pbc, self.model.r_max, self.model.iterations,
                    snapshot=REPEAT_TEST_ITERATIONS)
        clf = self.model.classifier
        reduced = clf.reduce(clf.soap_features(d.positions, f.cell, f.pbc))
        previous = clf.classify_reduced(reduced, clf.metric, self.threshold).codes
        voted = vote_phases(previous, d.positions, f.cell, f.pbc, clf.phase_vote)  # off in the seven-phase files
        ours = extend_ice(voted, d.positions, f.cell, f.pbc, self.boundary)
        ours = run_site_census(clf, ours, previous, reduced, d.positions, f.cell, f.pbc, self.boundary.shell)
        pairs = liquid_pairs(ours, d.positions, f.cell, f.pbc)
        early = second_look(clf, ours, reduced, d.positions, d.early_positions, f.cell, f.pbc, clf.metric,
                            self.threshold, pairs)
        ours = label_other_crystal(ours, reduced, d.positions, f.cell, f.pbc, clf.metric, self.threshold,
                                   self.boundary.shell, early, pairs)
        ours = run_ring_census(clf, ours, d.positions, f.cell, f.pbc, self.boundary.shell)
        route_a = extend_ice(previous, d.positions, f.cell, f.pbc, replace(self.boundary, min_ordered_ice_bonds=0))
        return {"ours": ours, "route a": route_a, "previous": previous, "chill": chill_plus(f.positions, f.cell),
                "denoised": d.positions}


def slab_depth(f, info: dict, chill: np.ndarray) -> np.ndarray:
    """Signed depth (A) of each molecule below the nearer interface plane (positive on the ice side).

    Each face's plane is located in every frame from the MD itself: going out from the middle of the slab,
    where the fraction of molecules that CHILL+ calls ice-like, in 1 A slices parallel to the face (moved in
    0.25 A steps), first drops below one half. Slices holding fewer than a quarter of the molecules of an
    average 1 A slice of the box are skipped: they lie between two crystal layers (Ih basal bilayers are
    3.7 A apart and 0.9 A thick), and a fraction of one or two molecules would put the plane a layer deep
    inside the crystal. (The faces of the held slab are not used: the molecular layer next to a held
    crystal freezes onto it while the rest melts, and near the melting point a face may advance or retreat.)
    """
    lz = f.cell[2, 2]
    z = f.positions[:, 2]
    centre = np.median(z[np.isin(f.atom_ids, info["ice_ids"])] % lz)
    dz = (z - centre + 0.5 * lz) % lz - 0.5 * lz
    depth = np.empty(len(z))
    window, step = 1.0, 0.25  # 1 A slices
    start = 0.25 * (info["slab"]["hi"] - info["slab"]["lo"])  # well inside the slab
    sparse = 0.25 * len(z) / lz * window  # fewer molecules than this: a slice between two crystal layers
    for side in (1.0, -1.0):
        s = side * dz
        mine = s >= 0
        plane = 0.5 * lz
        for a in np.arange(start, 0.5 * lz - window, step):
            slice_ = mine & (s >= a) & (s < a + window)
            if slice_.sum() >= sparse and chill[slice_].mean() < 0.5:
                plane = a + 0.5 * window
                break
        depth[mine] = plane - s[mine]
    return depth


def water_key(meta: dict) -> str:
    """"tip4p_ice" or "tip4p_2005": the water model of a make_md_snapshots.py run, from its JSON's "model"."""
    return meta["model"].split()[0].lower().replace("/", "_")


def coexistence_infos(md: Path) -> list[dict]:
    """The coexistence boxes of make_md_snapshots.py that were run (TIP4P/Ice at 250 K; TIP4P/2005 at 240 K),
    in this benchmark's terms."""
    found = []
    for path in sorted(md.glob("coexistence_*.json")):
        meta = json.loads(path.read_text())
        co = meta["coexistence"]
        lo, hi = co["interface_z"]
        found.append({"name": f"{water_key(meta)}_{path.stem}", "kind": "slab", "lattice": "Ih",
                      "trajectory": str(md / meta["trajectory"]), "ice_ids": co["ice_oxygen_ids"],
                      "slab": {"lo": lo, "hi": hi, "lz0": co.get("lz0", None)}})
    return found


def seed_infos(md: Path) -> list[dict]:
    """The atomistic seeded nuclei of make_md_snapshots.py that were run (seed_R10_240K, seed_R12_240K: TIP4P/Ice)."""
    found = []
    for path in sorted(md.glob("seed_*.json")):
        meta = json.loads(path.read_text())
        ids = meta["seed"]["seed_oxygen_ids"]
        found.append({"name": f"{water_key(meta)}_{path.stem}", "kind": "seed", "radius": meta["seed"]["radius_A"],
                      "seed_molecules": len(ids), "seed_ids": ids, "temperature": meta["temperature_K"],
                      "trajectory": str(md / meta["trajectory"])})
    return found


def supercooled_infos(md: Path) -> list[dict]:
    """The deeply supercooled liquids of make_md_snapshots.py that were run (TIP4P/Ice liquid_220K, 0.81 Tm;
    TIP4P/2005 liquid_tip4p2005_200K, 0.8 Tm); liquid_300K, the calibration liquid, is not one."""
    found = []
    for path in sorted(md.glob("liquid_*.json")):
        if path.stem == "liquid_300K":
            continue
        meta = json.loads(path.read_text())
        found.append({"name": f"{water_key(meta)}_liquid_{meta['temperature_K']:.0f}K", "kind": "liquid",
                      "temperature": meta["temperature_K"], "trajectory": str(md / meta["trajectory"])})
    return found


def report_slab(info: dict, frames: list, labels: list, code_of: dict) -> None:
    right = code_of[EXPECTED[info["lattice"]]]
    rows = {"ours": [], "ours, right phase": [], "ours, other crystal": [], "route a": [], "previous": [], "CHILL+": []}
    depth_all, lab, liq = [], {k: [] for k in rows}, {k: [] for k in rows}
    for f, lb in zip(frames, labels):
        depth = slab_depth(f, info, lb["chill"])
        depth_all.append(depth)
        for name, key in (("ours", "ours"), ("route a", "route a"), ("previous", "previous")):
            lab[name].append(lb[key] > LIQUID)
            liq[name].append(lb[key] == LIQUID)
        lab["ours, right phase"].append(lb["ours"] == right)
        liq["ours, right phase"].append(lb["ours"] == LIQUID)
        # this row: the share labelled "other crystal" (its last column: of the far liquid)
        lab["ours, other crystal"].append(lb["ours"] == OTHER_CRYSTAL)
        liq["ours, other crystal"].append(lb["ours"] != OTHER_CRYSTAL)
        lab["CHILL+"].append(lb["chill"])
        liq["CHILL+"].append(~lb["chill"])
    depth = np.concatenate(depth_all)
    inside = depth > 0
    far_liquid = depth < -LIQUID_BEYOND
    print(f"\n{info['name']}: {len(frames)} frames, {inside.sum() // len(frames)} ice molecules per frame")
    print(f"  {'':18s} " + " ".join(f"{a:.0f}-{a + 1:.0f}A".rjust(6) for a in BINS[:-1])
          + f" {'0-2A':>6s} {'all ice':>7s} {'liq>4A':>7s}")
    for name in rows:
        ice, liquid_label = np.concatenate(lab[name]), np.concatenate(liq[name])
        prof = [ice[inside & (depth >= a) & (depth < a + 1)].mean() for a in BINS[:-1]]
        first2 = ice[inside & (depth < 2)].mean()
        if name == "ours, right phase":
            liquid = ""
        elif name == "ours, other crystal":
            liquid = f"{100 * (~liquid_label[far_liquid]).mean():7.2f}"
        else:
            liquid = f"{100 * liquid_label[far_liquid].mean():7.2f}"
        print(f"  {name:18s} " + " ".join(f"{100 * p:6.1f}" for p in prof) + f" {100 * first2:6.1f} "
              f"{100 * ice[inside].mean():7.2f} {liquid}")


def ice_and_cluster(f, lb: dict, key: str) -> tuple[np.ndarray, int]:
    """Molecules a labelling calls ice (``key``: ours, route a, previous, or "chill" for CHILL+) and the size of
    its largest ice cluster (3.5 A; on the positions that labelling read)."""
    ice = lb[key] > LIQUID if key != "chill" else lb[key]
    pos = lb["denoised"] if key != "chill" else f.positions
    return ice, ice_clusters(ice.astype(np.int32), pos, f.cell, f.pbc, 3.5).largest


def report_seed(info: dict, frames: list, labels: list) -> None:
    print(f"\n{info['name']} (R = {info['radius']:.0f} A, {info['seed_molecules']} seed molecules, "
          f"{info['temperature']:.0f} K): per frame")
    print(f"  {'':10s} {'seed ice%':>9s} {'outside/seed':>12s} {'largest cluster':>15s}")
    other = [int((lb["ours"] == OTHER_CRYSTAL).sum()) for lb in labels]
    print(f"  ours: molecules labelled other crystal per frame: {other}")
    for name, key in (("ours", "ours"), ("route a", "route a"), ("previous", "previous"), ("CHILL+", "chill")):
        cells = []
        for f, lb in zip(frames, labels):
            seed = np.isin(f.atom_ids, info["seed_ids"])
            ice, cl = ice_and_cluster(f, lb, key)
            cells.append(f"{100 * ice[seed].mean():5.1f}/{(ice & ~seed).sum() / seed.sum():4.2f}/{cl:4d}")
        print(f"  {name:10s} " + "  ".join(cells) + "   (seed ice % / outside per seed / largest cluster)")
    ordered, chill_denoised = [], []
    for f, lb in zip(frames, labels):
        seed = np.isin(f.atom_ids, info["seed_ids"])
        shells = Shells.build(lb["denoised"], f.cell, f.pbc, BoundarySettings().shell)
        ordered.append(f"{100 * ordered_shells(shells, len(seed), BoundarySettings())[seed].mean():5.1f}")
        chill_denoised.append(f"{100 * chill_plus(lb['denoised'], f.cell)[seed].mean():5.1f}")
    print("  seed ordered at all, % per frame: ordered shell (route a's test) on the denoised positions "
          + " ".join(ordered) + "; CHILL+ on the denoised positions " + " ".join(chill_denoised))
    if info.get("inherent"):
        report_inherent(info, frames, labels)


def report_inherent(info: dict, frames: list, labels: list) -> None:
    """The seed against the nucleus of each frame's inherent structure (``inherent_nucleus``): a truth that
    holds the molecules that are crystalline, from the seed or grown onto it, and not the seed's surface
    molecules that disordered after release."""
    minimised = {f.timestep: f for f in read_frames(Path(info["inherent"]))}
    nuclei = []
    for f in frames:
        m = minimised[f.timestep]
        if not np.array_equal(m.atom_ids, f.atom_ids):
            raise SystemExit(f"{info['inherent']}: step {f.timestep} holds other atoms than the MD frame")
        nuclei.append(inherent_nucleus(m))
    cells = []
    for f, nucleus in zip(frames, nuclei):
        seed = np.isin(f.atom_ids, info["seed_ids"])
        cells.append(f"{nucleus.sum():4d}/{100 * nucleus[seed].mean():5.1f}/{(nucleus & ~seed).sum():3d}")
    print("  inherent structure's nucleus per frame: " + "  ".join(cells)
          + "   (molecules / % of the seed in it / molecules not of the seed)")
    for name, key in (("ours", "ours"), ("CHILL+", "chill")):
        cells = []
        for f, lb, nucleus in zip(frames, labels, nuclei):
            ice, cl = ice_and_cluster(f, lb, key)
            cells.append(f"{100 * ice[nucleus].mean():5.1f}/{(ice & ~nucleus).sum() / nucleus.sum():4.2f}/"
                         f"{cl / nucleus.sum():4.2f}")
        print(f"  {name:10s} " + "  ".join(cells)
              + "   (nucleus ice % / outside per nucleus molecule / largest cluster per nucleus molecule)")


def report_surface(info: dict, frames: list, labels: list, code_of: dict) -> None:
    """Ice Ih with free surfaces (vacuum): the fraction labelled ice (ours: Ih; CHILL+: any ice-like class) by
    depth below the outermost molecular layer of each surface (its 99.5th percentile of z, per frame)."""
    depth_all, ours, right, chill = [], [], [], []
    for f, lb in zip(frames, labels):
        z = f.positions[:, 2] % f.cell[2, 2]
        mid = np.median(z)
        top, bottom = np.percentile(z[z > mid], 99.5), np.percentile(z[z <= mid], 0.5)
        depth_all.append(np.where(z > mid, top - z, z - bottom))
        ours.append(lb["ours"] > LIQUID)
        right.append(lb["ours"] == code_of["Ih"])
        chill.append(lb["chill"])
    depth = np.concatenate(depth_all)
    print(f"\n{info['name']} ({info['temperature']:.0f} K, free {info['face']} surfaces): {len(frames)} frames x "
          f"{frames[0].n_atoms} molecules; labelled ice by depth below the outermost layer")
    print(f"  {'':18s} " + " ".join(f"{a:.0f}-{a + 1:.0f}A".rjust(6) for a in BINS[:-1]) + f" {'>10A':>6s} {'all':>6s}")
    for name, lab in (("ours", ours), ("ours, right phase", right), ("CHILL+", chill)):
        v = np.concatenate(lab)
        prof = [v[(depth >= a) & (depth < a + 1)].mean() for a in BINS[:-1]]
        print(f"  {name:18s} " + " ".join(f"{100 * p:6.1f}" for p in prof)
              + f" {100 * v[depth >= BINS[-1]].mean():6.1f} {100 * v.mean():6.1f}")


def report_liquid(info: dict, frames: list, labels: list) -> None:
    print(f"\n{info['name']} ({info['temperature']:.0f} K, {len(frames)} frames x {frames[0].n_atoms} molecules)")
    for name, key in (("ours", "ours"), ("route a", "route a"), ("previous", "previous"), ("CHILL+", "chill")):
        frac, largest = [], 0
        for f, lb in zip(frames, labels):
            ice = lb[key] > LIQUID if key != "chill" else lb[key]
            pos = lb["denoised"] if key != "chill" else f.positions
            frac.append(ice.mean() if key == "chill" else (lb[key] != LIQUID).mean())
            largest = max(largest, ice_clusters(ice.astype(np.int32), pos, f.cell, f.pbc, 3.5).largest)
        other = "" if key == "chill" else f"   other crystal {100 * np.mean([(lb[key] == OTHER_CRYSTAL).mean() for lb in labels]):.3f}%"
        print(f"  {name:10s} liquid {100 * (1 - np.mean(frac)):8.3f}%   largest false-ice cluster {largest}{other}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / "runs" / "interfaces")
    ap.add_argument("--md", type=Path, default=REPO / "runs" / "md")
    ap.add_argument("--model")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--min-ordered-bonds", type=int)
    ap.add_argument("--min-ice-neighbours", type=int)
    ap.add_argument("--min-ordered-ice-bonds", type=int)
    ap.add_argument("--support-radius", type=float)
    ap.add_argument("--min-support", type=float)
    ap.add_argument("--small-cluster-rounds", type=int)
    ap.add_argument("--small-cluster-size", type=int)
    ap.add_argument("--small-cluster-share", type=float)
    ap.add_argument("--flat-support", action="store_true",
                    help="step 5's support check with a flat face's share (convex_support off: the model before it)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    labeller = Labeller(args.model, rounds=args.rounds, min_ordered_bonds=args.min_ordered_bonds,
                        min_ice_neighbours=args.min_ice_neighbours, min_ordered_ice_bonds=args.min_ordered_ice_bonds,
                        support_radius=args.support_radius, min_support=args.min_support,
                        small_cluster_rounds=args.small_cluster_rounds, small_cluster_size=args.small_cluster_size,
                        small_cluster_share=args.small_cluster_share,
                        convex_support=False if args.flat_support else None)
    code_of = {v: k for k, v in labeller.model.classifier.code_names.items()}
    print(f"model {labeller.model.path}; threshold {labeller.threshold}; boundary {labeller.boundary}")
    infos = [json.loads(p.read_text()) for p in sorted(args.data.glob("*.json"))]
    for info in infos:
        minimised = args.data / f"{info['name']}.inherent.lammpstrj"
        if info["kind"] == "seed" and minimised.exists():
            info["inherent"] = str(minimised)
    infos += coexistence_infos(args.md) + seed_infos(args.md) + supercooled_infos(args.md)
    for info in infos:
        if args.only and info["name"] not in args.only:
            continue
        path = Path(info.get("trajectory", args.data / f"{info['name']}.lammpstrj"))
        frames = list(read_frames(path))
        labels = [labeller.frame(f) for f in frames]
        if info["kind"] == "slab":
            report_slab(info, frames, labels, code_of)
        elif info["kind"] == "seed":
            report_seed(info, frames, labels)
        elif info["kind"] == "surface":
            report_surface(info, frames, labels, code_of)
        else:
            report_liquid(info, frames, labels)


if __name__ == "__main__":
    main()
