"""Which atoms and which frames to read: :class:`Selection` (the ``--select`` option), :func:`parse_frames`
(the ``--frames`` option), and the messages every reader gives when a selection matches nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import TrajectoryError

__all__ = ["Selection", "empty_selection_error", "parse_frames", "resolve_frames", "values_summary"]


@dataclass(frozen=True)
class Selection:
    """Which atoms are the water oxygens. Unset fields do not filter; set fields must all match.

    All fields unset means *automatic*: each reader picks the oxygens by the best evidence its format
    offers (see :func:`.readers.read_frames`).
    """

    element: str | None = None
    name: str | None = None
    types: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str | None) -> Selection:
        """Parse the CLI syntax ``"element O"``, ``"name OW"``, ``"type 1"`` or ``"type 1 3"``.

        ``None``, ``""`` and ``"auto"`` give the automatic selection.
        """
        if text is None or not text.strip() or text.strip().lower() == "auto":
            return cls()
        words = text.split()
        keyword, values = words[0].lower(), words[1:]
        if keyword == "element" and len(values) == 1:
            return cls(element=values[0])
        if keyword == "name" and len(values) == 1:
            return cls(name=values[0])
        if keyword in ("type", "types") and values:
            try:
                return cls(types=tuple(int(v) for v in values))
            except ValueError:
                pass
        raise TrajectoryError(
            f"cannot understand the selection {text!r}. Accepted forms: 'element O', 'name OW', "
            "'type 1' or 'type 1 3' (LAMMPS atom types, integers), or leave --select out for automatic "
            "oxygen detection"
        )

    @property
    def is_auto(self) -> bool:
        """True when no field is set: each reader finds the oxygens itself."""
        return self.element is None and self.name is None and self.types is None

    def describe(self) -> str:
        """The selection in the CLI syntax that :meth:`parse` reads."""
        parts = []
        if self.element is not None:
            parts.append(f"element {self.element}")
        if self.name is not None:
            parts.append(f"name {self.name}")
        if self.types is not None:
            parts.append("type " + " ".join(str(t) for t in self.types))
        return " and ".join(parts) or "automatic"


def parse_frames(text: str | None) -> slice:
    """Parse ``--frames``: ``"START:STOP[:STEP]"`` as in Python slicing, ``"5"`` for frame 5 alone.

    ``None`` or ``""`` means every frame. Negative numbers count from the end, as in Python.

    Returns
    -------
    slice
        The frames to read, for :func:`read_frames`.

    Raises
    ------
    TrajectoryError
        When ``text`` is none of these forms, or its step is not positive.
    """
    if text is None or not text.strip():
        return slice(None)
    help_text = "use START:STOP[:STEP] as in Python slicing (e.g. '0:10', '::5', '-1'), or one frame number"
    parts = text.strip().split(":")
    try:
        numbers = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise TrajectoryError(f"cannot understand --frames {text!r}: {help_text}") from None
    if len(numbers) == 1:
        (single,) = numbers
        if single is None:
            raise TrajectoryError(f"cannot understand --frames {text!r}: {help_text}")
        # "-1" must mean the last frame, which slice(-1, 0) would not.
        return slice(single, single + 1 if single != -1 else None)
    if len(numbers) > 3:
        raise TrajectoryError(f"cannot understand --frames {text!r}: {help_text}")
    frames = slice(*numbers)
    if frames.step is not None and frames.step <= 0:
        raise TrajectoryError(f"--frames {text!r}: the step must be a positive integer (frames are read forwards)")
    return frames



def resolve_frames(frames: slice | None, total: Callable[[], int]) -> slice:
    """``frames`` as a slice with non-negative start (and stop, where given) and a positive step.

    Parameters
    ----------
    frames : slice or None
        As :func:`parse_frames` gives it; ``None``: every frame.
    total : callable
        Gives the file's frame count; called only when a negative bound needs it, because counting frames
        means reading the whole file for text formats.

    Raises
    ------
    TrajectoryError
        When the step is not positive (frames are read forwards).
    """
    frames = frames or slice(None)
    if frames.step is not None and frames.step <= 0:
        raise TrajectoryError("frames must be read forwards: use a positive step")
    if (frames.start or 0) < 0 or (frames.stop is not None and frames.stop < 0):
        start, stop, step = frames.indices(total())
        return slice(start, stop, step)
    return slice(frames.start or 0, frames.stop, frames.step or 1)


def values_summary(label: str, values: np.ndarray) -> str:
    """``"label: a, b, ..."``: the distinct values of a per-atom column, for an error message (20 at most)."""
    unique = [str(v) for v in np.unique(values) if str(v)]  # blank entries (e.g. virtual sites) say nothing
    shown = ", ".join(unique[:20]) + (f", ... ({len(unique)} in all)" if len(unique) > 20 else "")
    return f"{label}: {shown}"


def empty_selection_error(select: Selection, where: str, available: Sequence[str]) -> TrajectoryError:
    """The error for a selection that matched no atom in ``where``, listing what the file has
    (``available``: :func:`values_summary` lines) and how to select instead."""
    has = "; ".join(available) if available else "no names, types or elements"
    what = "the automatic oxygen selection" if select.is_auto else f"the selection '{select.describe()}'"
    return TrajectoryError(
        f"{what} matched no atom in {where}. The file has {has}. "
        "Pass --select with one of these (e.g. --select 'element O', --select 'name OW' or --select 'type 1')"
    )
