"""OVITO Python script modifier written by `icephase ovito-script`: names and colours the icephase codes.

In OVITO: Add modification -> Python script -> Load script from file -> this file. It turns the code
column of an icephase dump ('c_phase[1]') into the typed property "Structure Type" with phase names, and
colours the particles like every icephase picture.
"""
import numpy as np
from ovito.data import DataCollection, ParticleType

COLUMN = 'c_phase[1]'
PHASES = {-1: ('not analysed', (0.35, 0.35, 0.35)), 0: ('liquid', (0.78, 0.78, 0.78)), 1: ('Ih', (0.121, 0.467, 0.706)), 2: ('Ic', (0.09, 0.745, 0.812)), 3: ('II', (1.0, 0.498, 0.055)), 4: ('III', (0.839, 0.153, 0.157)), 5: ('VI', (0.58, 0.404, 0.741)), 6: ('VII', (0.549, 0.337, 0.294)), 7: ('sI', (0.173, 0.627, 0.173))}  # code: (name, (r, g, b))


def modify(frame: int, data: DataCollection):
    if COLUMN not in data.particles.keys():
        raise RuntimeError(f"no {COLUMN!r} column: map the dump column that holds the phase code to it")
    codes = np.asarray(data.particles[COLUMN]).astype(int)
    stype = data.particles_.create_property("Structure Type", data=codes)
    for code, (name, color) in sorted(PHASES.items()):
        stype.types_.append(ParticleType(id=code, name=name, color=color))
    data.particles_.create_property("Color", data=[PHASES.get(int(c), ("?", (1.0, 0.0, 1.0)))[1] for c in codes])
