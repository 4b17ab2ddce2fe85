"""The OVITO modifier: phase names and colours on a dump's code column, or a classification of the frame.

Installed with the package, it is registered under the ``OVITO.Modifier`` entry point (``pyproject.toml``), so
OVITO Pro lists it as *Ice phase (icephase)* once icephase is installed into OVITO Pro's Python
(``ovitos -m pip install icephase-lmp``). In an ``ovito`` Python pipeline::

    from ovito.io import import_file
    from icephase_lmp.ovito_modifier import IcePhaseModifier

    pipeline = import_file("labels.lammpstrj")
    pipeline.modifiers.append(IcePhaseModifier())              # names + colours from the `code` column
    pipeline.modifiers.append(IcePhaseModifier(classify=True))  # or: classify each frame itself (torch)

Two modes:

- **labels** (default; no torch needed): the phase code column of an icephase dump (``code`` from
  ``icephase classify``, ``c_ID[1]`` from ``compute icephase``) becomes OVITO's typed property
  *Structure Type*, with the phase names and colours of ``phases.py`` (the same as every icephase picture).
- **classify**: the oxygens of the frame go through the same ``Pipeline`` as ``icephase classify``;
  *Structure Type* holds the result and *icephase Distance* / *icephase Cluster* the distances and ice clusters.

``icephase ovito-script`` still writes a self-contained script for OVITO Basic, whose Python has no icephase.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np
from ovito.data import DataCollection, ParticleType
from ovito.pipeline import ModifierInterface
from traits.api import Bool, Str

from .errors import TrajectoryError
from .phases import NOT_ANALYSED, phase_styles

#: The code columns tried, in order, when ``code_property`` is empty.
AUTO_CODE_PROPERTIES = ("code",)
#: ``compute icephase`` dumps write ``c_<compute ID>[1]``.
_COMPUTE_COLUMN = re.compile(r"^c_[A-Za-z0-9_]+\[1\]$")

STRUCTURE_TYPE = "Structure Type"
DISTANCE_PROPERTY = "icephase Distance"
CLUSTER_PROPERTY = "icephase Cluster"


@lru_cache(maxsize=8)
def _model_names(model: str) -> tuple[str, ...]:
    """The phase names (codes 1..K) of a model file ('' is the shipped model), from its metadata only."""
    from .model_file import SHIPPED_MODEL, read_metadata

    meta = read_metadata(model or SHIPPED_MODEL)
    return tuple(p["name"] for p in sorted(meta["phases"], key=lambda p: p["code"]) if p["code"] > 0)


def code_property_name(data: DataCollection, requested: str = "") -> str:
    """The particle property holding the phase codes: ``requested``, else ``code``, else the only
    ``c_ID[1]`` column (a ``compute icephase`` dump)."""
    keys = list(data.particles.keys())
    if requested:
        if requested not in keys:
            raise TrajectoryError(f"no particle property {requested!r}; there are {', '.join(keys)}")
        return requested
    for name in AUTO_CODE_PROPERTIES:
        if name in keys:
            return name
    computes = [k for k in keys if _COMPUTE_COLUMN.match(k)]
    if len(computes) == 1:
        return computes[0]
    raise TrajectoryError(
        "cannot tell which particle property holds the icephase code (none named 'code', "
        f"{'several' if computes else 'no'} 'c_ID[1]' columns); set code_property to one of: {', '.join(keys)}"
    )


def oxygen_mask(data: DataCollection, select: str = "") -> np.ndarray:
    """(N,) bool: the water oxygens, by particle type, in the CLI's syntax: ``element O`` or ``name OW``
    (type name), ``type 1 2`` (type ids); empty: the type named ``O``, else every particle of a one-type frame."""
    from .selection import Selection

    selection = Selection.parse(select)
    n = data.particles.count
    if "Particle Type" not in data.particles.keys():
        if selection.is_auto:
            return np.ones(n, dtype=bool)
        raise TrajectoryError("the particles have no types to select oxygens by: leave the selection empty")
    ptype = data.particles["Particle Type"]
    ids = np.asarray(ptype)
    names = {t.id: t.name for t in ptype.types}
    if selection.types is not None:
        mask = np.isin(ids, selection.types)
    elif selection.element is not None or selection.name is not None:
        wanted = selection.element if selection.element is not None else selection.name
        mask = np.isin(ids, [i for i, name in names.items() if name == wanted])
    else:
        oxygen_ids = [i for i, name in names.items() if name == "O"]
        present = np.unique(ids)
        if oxygen_ids:
            mask = np.isin(ids, oxygen_ids)
        elif len(present) == 1:
            mask = np.ones(n, dtype=bool)
        else:
            mask = np.zeros(n, dtype=bool)
    if not mask.any():
        described = ", ".join(f"{i} ({names.get(i) or 'no name'})" for i in np.unique(ids))
        raise TrajectoryError(f"no oxygens selected ({selection.describe()}): the particle types are {described}; "
                              "set select, e.g. 'type 1' or 'element O'")
    return mask


def set_phase_types(data: DataCollection, codes: np.ndarray, names: tuple[str, ...] | list[str]) -> None:
    """Store ``codes`` as the typed property *Structure Type* (phase names and colours) and colour the particles."""
    styles = phase_styles(list(names))
    codes = np.asarray(codes, dtype=np.int32)
    unknown = sorted(set(np.unique(codes).tolist()) - set(styles))
    if unknown:
        raise TrajectoryError(f"codes {unknown} are not in the model's code table ({sorted(styles)}): "
                              "is this the model that wrote the labels?")
    stype = data.particles_.create_property(STRUCTURE_TYPE, data=codes)
    for code, (name, color) in sorted(styles.items()):
        stype.types_.append(ParticleType(id=code, name=name, color=color))
    colors = np.array([styles[c][1] for c in sorted(styles)])
    data.particles_.create_property("Color", data=colors[np.searchsorted(sorted(styles), codes)])


def classify_frame(data: DataCollection, model: str = "", select: str = "", denoise: bool = True) -> dict[str, Any]:
    """Run the icephase ``Pipeline`` on the oxygens of an OVITO frame: full-length codes (-1 for the other
    particles), distances (NaN there), cluster ids (0 there), and the model's phase names."""
    from .api import pipeline_for

    pipeline = pipeline_for(model or None, denoise=denoise)
    mask = oxygen_mask(data, select)
    matrix = np.asarray(data.cell[...], dtype=np.float64)  # OVITO: columns are a, b, c and the origin
    pbc = tuple(bool(p) for p in data.cell.pbc)
    cell = matrix[:, :3].T
    positions = np.asarray(data.particles.positions, dtype=np.float64)[mask]
    result = pipeline.run(positions, cell if np.abs(cell).sum() > 0 else None, pbc)
    n = data.particles.count
    codes = np.full(n, NOT_ANALYSED, dtype=np.int32)
    distances = np.full(n, np.nan)
    clusters = np.zeros(n, dtype=np.int32)
    codes[mask], distances[mask], clusters[mask] = result.codes, result.distances, result.clusters.ids
    names = tuple(pipeline.classifier.code_names[c] for c in sorted(pipeline.classifier.code_names) if c > 0)
    return {"codes": codes, "distances": distances, "clusters": clusters, "names": names}


class IcePhaseModifier(ModifierInterface):
    """Ice phases as named, coloured particle types (*Structure Type*), from a code column or classified here."""

    classify = Bool(False, label="Classify the frame with icephase (needs torch)")
    code_property = Str("", label="Code property (empty: 'code' or the c_ID[1] column)")
    model = Str("", label="Model file (empty: the shipped model)")
    select = Str("", label="Oxygens (empty: type O; or 'type 1', 'element O')")
    denoise = Bool(True, label="Denoise before classifying")

    def modify(self, data: DataCollection, *, frame: int, **kwargs: Any) -> None:
        """OVITO's per-frame call: set *Structure Type* (and, classifying, the distance and cluster properties)."""
        if self.classify:
            out = classify_frame(data, self.model, self.select, self.denoise)
            set_phase_types(data, out["codes"], out["names"])
            data.particles_.create_property(DISTANCE_PROPERTY, data=out["distances"])
            data.particles_.create_property(CLUSTER_PROPERTY, data=out["clusters"])
            data.attributes["icephase.largest_cluster"] = int(np.count_nonzero(out["clusters"] == 1))
            return
        column = code_property_name(data, self.code_property)
        codes = np.rint(np.asarray(data.particles[column], dtype=np.float64)).astype(np.int32)
        set_phase_types(data, codes, _model_names(self.model))
