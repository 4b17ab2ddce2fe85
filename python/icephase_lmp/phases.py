"""The one place where phase names, integer codes, GenIce2 lattice names and colours are defined.

Everything else (the classifier, the CLI, model metadata read by the LAMMPS plugin, the docs, the
OVITO colouring) takes them from here. A model carries its own code table in its metadata, so a
user-built reference set (codes 1..K in the user's order) travels with the model that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Atom not analysed: outside the compute's group, or not an oxygen.
NOT_ANALYSED = -1
#: No reference matched closely enough (distance above the threshold): liquid / disordered.
LIQUID = 0
#: Ordered but none of the model's phases: no reference matched, yet the molecule's environment repeats
#: among its neighbours (other_crystal.py). Negative, like NOT_ANALYSED, so that "code > LIQUID" keeps
#: meaning "one of the model's phases" and the code is the same for every model.
OTHER_CRYSTAL = -2

#: the element every model and classifier works on (atomic number of oxygen)
OXYGEN_NUMBER = 8

#: Oxygens closer than this (A) to another oxygen are not water: no ice or liquid state point has an
#: O-O distance below ~2.4 A (the closest pair in any frame of the GCIceNet MD, seven ices, liquid and
#: phase T, is 2.44-2.54 A apart), and the denoiser throws such pairs, and their neighbours with them,
#: far away. Every oxygen of such a
#: pair is labelled LIQUID with distance TOO_CLOSE_DISTANCE, and is left out of the other oxygens'
#: denoising and SOAP environments: offline (pipeline.py) and in the LAMMPS compute, which reads this
#: value through lammps_bridge.model_metadata_json.
MIN_OXYGEN_DISTANCE = 2.0
#: The distance reported for those oxygens: no real distance is negative, so it marks "not measured".
TOO_CLOSE_DISTANCE = -1.0

#: Longest step (A) one oxygen may take in one denoising iteration; a longer predicted step is shortened
#: to this length, in its own direction. Real steps are a fraction of this (the shipped model's largest
#: on frame 0 of the GCIceNet liquid, VII, III, Ih and T trajectories: 0.79 A, in the liquid), so only
#: runaway output is shortened, and an atom moves at most iterations x MAX_STEP, which keeps every
#: neighbour search bounded.
MAX_STEP = 2.0
#: A predicted step longer than this (A), or one that is not finite, stops the run with an error: no
#: displacement of a thermal oxygen comes near it, so the network is damaged or fed something far from water.
RUNAWAY_STEP = 10.0
#: At most this many neighbours per oxygen within the denoiser's cutoff (dense ice VII has ~25 at
#: 4.5 A, and oxygens at least MIN_OXYGEN_DISTANCE apart cannot exceed ~70): more means the network has
#: collapsed atoms together, and the run stops instead of building an ever larger graph.
MAX_NEIGHBOURS = 100


def denoising_limits() -> dict[str, float]:
    """The denoising limits, as the LAMMPS compute reads them (through lammps_bridge)."""
    return {"max_step": MAX_STEP, "runaway_step": RUNAWAY_STEP, "max_neighbours": MAX_NEIGHBOURS}


NOT_ANALYSED_NAME = "not analysed"
LIQUID_NAME = "liquid"
OTHER_CRYSTAL_NAME = "other crystal"


@dataclass(frozen=True)
class Phase:
    """One reference phase: its code, name, GenIce2 lattice and colour."""

    code: int
    name: str
    #: GenIce2 lattice name that builds its ideal structure.
    lattice: str
    #: Oxygen sites per GenIce2 unit cell (a fact of the lattice, checked by the tests).
    sites_per_cell: int
    #: RGB in 0..1, used by every plot and by the OVITO rendering.
    color: tuple[float, float, float]


#: The seven reference phases of the paper, in code order 1..7.
BUILTIN_PHASES: tuple[Phase, ...] = (
    Phase(1, "Ih", "1h", 16, (0.121, 0.467, 0.706)),
    Phase(2, "Ic", "1c", 8, (0.090, 0.745, 0.812)),
    Phase(3, "II", "2", 12, (1.000, 0.498, 0.055)),
    Phase(4, "III", "3", 12, (0.839, 0.153, 0.157)),
    Phase(5, "VI", "6", 10, (0.580, 0.404, 0.741)),
    Phase(6, "VII", "7", 16, (0.549, 0.337, 0.294)),
    Phase(7, "sI", "CS1", 46, (0.173, 0.627, 0.173)),
)

#: Further phases with a name, lattice and colour of their own: ``icephase train --reference V`` finds them
#: by name, and the shipped twelve-phase model (models/icephase-12phase.pth, made by
#: models/make_extended_model.sh) holds them after the seven, in this code order 8..12. (Ice IV is metastable in
#: V's region of the diagram; its oxygen motifs resemble V's, and a model with V but without IV called it "V".)
EXTENDED_PHASES: tuple[Phase, ...] = (
    Phase(8, "V", "5", 28, (0.890, 0.467, 0.761)),
    Phase(9, "XII", "12", 24, (0.737, 0.741, 0.133)),
    Phase(10, "sII", "CS2", 136, (0.400, 0.761, 0.647)),
    Phase(11, "sH", "HS3", 68, (0.700, 0.870, 0.300)),
    Phase(12, "IV", "4", 128, (0.600, 0.300, 0.550)),
)
#: Every phase known by name: the seven, then the extended ones.
KNOWN_PHASES: tuple[Phase, ...] = BUILTIN_PHASES + EXTENDED_PHASES

LIQUID_COLOR = (0.78, 0.78, 0.78)
NOT_ANALYSED_COLOR = (0.35, 0.35, 0.35)
OTHER_CRYSTAL_COLOR = (1.0, 0.85, 0.0)

#: Colours for user-built reference sets beyond the built-in ones (cycled).
EXTRA_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.737, 0.741, 0.133),
    (0.890, 0.467, 0.761),
    (0.498, 0.498, 0.498),
    (0.400, 0.761, 0.647),
    (0.988, 0.553, 0.384),
)

_BY_NAME = {p.name.lower(): p for p in KNOWN_PHASES}
_BY_LATTICE = {p.lattice.lower(): p for p in KNOWN_PHASES}


def builtin_phase(name_or_lattice: str) -> Phase | None:
    """Look a known phase (the seven or an extended one) up by its name (``Ih``, ``sII``) or GenIce2 lattice
    name (``1h``, ``CS2``), any case."""
    key = name_or_lattice.strip().lower()
    return _BY_NAME.get(key) or _BY_LATTICE.get(key)


def code_table(names: list[str]) -> dict[int, str]:
    """The full code -> name table of a reference set whose phases are ``names`` in code order 1..K."""
    table = {OTHER_CRYSTAL: OTHER_CRYSTAL_NAME, NOT_ANALYSED: NOT_ANALYSED_NAME, LIQUID: LIQUID_NAME}
    table.update({i + 1: n for i, n in enumerate(names)})
    return table


def output_codes(code_names: dict[int, str]) -> list[int]:
    """The codes a result can hold, in the order of every count table (the compute's global vector, the
    per-frame counts of ``icephase classify``, MDAnalysis fractions): liquid, the model's phases 1..K, then
    other crystal; not analysed left out."""
    phases = sorted(c for c in code_names if c > LIQUID)
    return [LIQUID, *phases, OTHER_CRYSTAL]


def color_for(code: int, names: list[str]) -> tuple[float, float, float]:
    """The colour of ``code`` in a reference set ``names``: built-in phases keep their colour everywhere."""
    if code == NOT_ANALYSED:
        return NOT_ANALYSED_COLOR
    if code == OTHER_CRYSTAL:
        return OTHER_CRYSTAL_COLOR
    if code == LIQUID:
        return LIQUID_COLOR
    phase = builtin_phase(names[code - 1])
    if phase is not None:
        return phase.color
    return EXTRA_COLORS[(code - 1) % len(EXTRA_COLORS)]


def phase_styles(names: list[str]) -> dict[int, tuple[str, tuple[float, float, float]]]:
    """code -> (name, colour) for every code of a reference set ``names``, -1 and 0 included: what the OVITO
    modifier and ``icephase ovito-script`` give OVITO's typed property."""
    return {code: (name, color_for(code, names)) for code, name in code_table(names).items()}
