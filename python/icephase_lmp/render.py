"""Pictures people look at: a frame coloured by phase (OVITO) and phase fractions against time.

Colours come from :mod:`icephase_lmp.phases`, so a phase has the same colour in every picture, plot and
OVITO session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .phases import code_table, color_for


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
    from ovito.vis import ColorLegendOverlay, OpenGLRenderer, TextLabelOverlay, Viewport

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
        vp = Viewport(type=Viewport.Type.Ortho, camera_dir=(1.0, 0.35, -0.25))
        vp.zoom_all(size)
        legend = ColorLegendOverlay(property="particles/Structure Type", title="phase", font_size=0.08,
                                    legend_size=0.4, label_size=1.0, use_type_shapes=False, offset_x=-0.03,
                                    alignment=0x0082)  # Qt.AlignRight | Qt.AlignVCenter
        legend.orientation = type(legend.orientation).Vertical
        vp.overlays.append(legend)
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
    xlabel: str = "time (ps)",
) -> Path:
    """Fraction of analysed oxygens in each phase against time, one line per phase that occurs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(names)
    table = code_table(names)
    present = sorted({int(c) for codes in codes_per_frame for c in np.unique(codes) if c >= 0})
    fig, ax = plt.subplots(figsize=(7, 4))
    for code in present:
        frac = [np.count_nonzero(codes == code) / max(np.count_nonzero(codes >= 0), 1) for codes in codes_per_frame]
        ax.plot(times, frac, marker="o", ms=3, color=color_for(code, names), label=table[code])
    ax.set_xlabel(xlabel)
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
