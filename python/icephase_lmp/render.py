"""Pictures people look at: a frame coloured by phase (OVITO) and phase fractions against time.

Colours come from :mod:`icephase_lmp.phases`, so a phase has the same colour in every picture, plot and
OVITO session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .phases import NOT_ANALYSED, code_table, color_for, phase_styles


def _phase_viewport(size: tuple[int, int]) -> Any:
    """An orthographic view of the scene, zoomed to fit ``size`` (pixels), with the legend of the phases."""
    from ovito.vis import ColorLegendOverlay, Viewport

    vp = Viewport(type=Viewport.Type.Ortho, camera_dir=(1.0, 0.35, -0.25))
    vp.zoom_all(size)
    legend = ColorLegendOverlay(property="particles/Structure Type", title="phase", font_size=0.08,
                                legend_size=0.4, label_size=1.0, use_type_shapes=False, offset_x=-0.03,
                                alignment=0x0082)  # Qt.AlignRight | Qt.AlignVCenter
    legend.orientation = type(legend.orientation).Vertical
    vp.overlays.append(legend)
    return vp


def render_phases(
    positions: np.ndarray,
    cell: np.ndarray,
    codes: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    size: tuple[int, int] = (1000, 750),
    origin: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Render oxygens coloured by phase code to a PNG, with a legend of the phases present."""
    from ovito.data import DataCollection, ParticleType
    from ovito.pipeline import Pipeline, StaticSource
    from ovito.vis import OpenGLRenderer, TextLabelOverlay

    names = list(names)
    table = code_table(names)
    codes = np.asarray(codes, dtype=int)
    data = DataCollection()
    cell_matrix = np.zeros((3, 4))
    cell_matrix[:, :3] = np.asarray(cell, dtype=float).T  # OVITO: columns are the cell vectors
    if origin is not None:
        cell_matrix[:, 3] = origin
    data.create_cell(cell_matrix, pbc=(True, True, True))
    particles = data.create_particles(count=len(positions))
    particles.create_property("Position", data=np.asarray(positions, dtype=float))
    # 'Structure Type' is OVITO's typed per-particle property: ids are our codes, with names and colours
    stype = particles.create_property("Structure Type", data=codes)
    for code in sorted(set(codes.tolist())):
        stype.types.append(ParticleType(id=code, name=table.get(code, str(code)), color=color_for(code, names)))
    particles.create_property("Color", data=np.array([color_for(int(c), names) for c in codes]))
    particles.create_property("Radius", data=np.full(len(positions), 1.1))
    pipeline = Pipeline(source=StaticSource(data=data))
    pipeline.add_to_scene()
    try:
        vp = _phase_viewport(size)
        if title:
            vp.overlays.append(TextLabelOverlay(text=title, font_size=0.04, alignment=0x0021))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        vp.render_image(size=size, filename=str(path), background=(1.0, 1.0, 1.0), renderer=OpenGLRenderer())
    finally:
        pipeline.remove_from_scene()
    return path


def plot_phase_fractions(
    times: Sequence[float], codes_per_frame: Sequence[np.ndarray], names: Sequence[str], path: str | Path,
    xlabel: str = "time (ps)", largest: Sequence[int] | None = None,
) -> Path:
    """Fraction of analysed oxygens in each phase against time, one line per phase that occurs; with
    ``largest`` (molecules in the largest ice cluster per frame) a second panel below shows it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(names)
    table = code_table(names)
    present = sorted({int(c) for codes in codes_per_frame for c in np.unique(codes) if c != NOT_ANALYSED})
    if largest is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig, (ax, ax_cluster) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(2, 1))
        ax_cluster.plot(times, largest, marker="o", ms=3, color="black")
        ax_cluster.set_ylabel("largest ice cluster\n(molecules)")
        ax_cluster.set_xlabel(xlabel)
        ax_cluster.set_ylim(bottom=0)
        ax_cluster.grid(alpha=0.3)
    for code in present:
        frac = [np.count_nonzero(codes == code) / max(np.count_nonzero(codes != NOT_ANALYSED), 1)
                for codes in codes_per_frame]
        ax.plot(times, frac, marker="o", ms=3, color=color_for(code, names), label=table[code])
    if largest is None:
        ax.set_xlabel(xlabel)
    if all(float(t).is_integer() for t in times):  # frame numbers: no ticks between frames
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("fraction of oxygens")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


OVITO_MODIFIER_TEMPLATE = '''"""OVITO Python script modifier written by `icephase ovito-script`: names and colours the icephase codes.

In OVITO: Add modification -> Python script -> Load script from file -> this file. It turns the code
column of an icephase dump ({column!r}) into the typed property "Structure Type" with phase names, and
colours the particles like every icephase picture.
"""
import numpy as np
from ovito.data import DataCollection, ParticleType

COLUMN = {column!r}
PHASES = {phases!r}  # code: (name, (r, g, b))


def modify(frame: int, data: DataCollection):
    if COLUMN not in data.particles.keys():
        raise RuntimeError(f"no {{COLUMN!r}} column: map the dump column that holds the phase code to it")
    codes = np.asarray(data.particles[COLUMN]).astype(int)
    stype = data.particles_.create_property("Structure Type", data=codes)
    for code, (name, color) in sorted(PHASES.items()):
        stype.types_.append(ParticleType(id=code, name=name, color=color))
    data.particles_.create_property("Color", data=[PHASES.get(int(c), ("?", (1.0, 0.0, 1.0)))[1] for c in codes])
'''


def ovito_modifier_source(names: Sequence[str], column: str) -> str:
    """A self-contained OVITO script modifier (OVITO's own Python has no icephase) for this code table."""
    phases = {code: (name, tuple(round(x, 3) for x in color)) for code, (name, color) in phase_styles(list(names)).items()}
    return OVITO_MODIFIER_TEMPLATE.format(column=column, phases=phases)


def render_dump_with_ovito(dump: str | Path, modifier: str | Path, png: str | Path, size=(900, 650)) -> Path:
    """Open a dump with OVITO's own reader, apply the script modifier, render: what the GUI will show."""
    from ovito.io import import_file
    from ovito.modifiers import PythonScriptModifier
    from ovito.vis import OpenGLRenderer

    pipeline = import_file(str(dump))
    pipeline.modifiers.append(PythonScriptModifier(script=Path(modifier).read_text()))
    pipeline.add_to_scene()
    try:
        vp = _phase_viewport(size)
        png = Path(png)
        vp.render_image(size=size, filename=str(png), background=(1.0, 1.0, 1.0), renderer=OpenGLRenderer(),
                        frame=pipeline.source.num_frames - 1)
    finally:
        pipeline.remove_from_scene()
    return png
