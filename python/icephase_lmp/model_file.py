"""The one-file model, ``model.pth``: a TorchScript archive of the denoiser with extra files.

- The denoiser is stored frozen (``torch.jit.freeze``: weights folded into one graph). Its outputs are
  bit-identical to the scripted module's, and it loads in ~0.2 s instead of ~1.2-1.5 s (the scripted
  nequip network has ~110 submodules whose code TorchScript compiles at load), in Python and in libtorch.
- ``denoiser_weights.npz``: the trainable weights (the frozen graph has no parameters left), for
  fine-tuning (``icephase train --init-from``); loaded with ``allow_pickle=False``. Files written before
  the denoiser was frozen have no such member; their scripted denoiser holds the weights itself.
- ``metadata.json``: format version, species, cutoffs (and the ghost/communication cutoff they imply),
  default iterations and tolerance, SOAP settings, metric, thresholds, phase names and codes, training.
- ``classifier.npz``: the fitted classifier arrays (loaded with ``allow_pickle=False``).
- ``compact_denoiser.npz`` (files of 2026-12-02 and later with a compact denoiser): the compact form's
  constants, which the offline pipeline (denoiser_kernel.py) and the LAMMPS compute
  (src/compute_icephase/icephase_compact_layers.cpp, reading them through lammps_bridge.compact_constants)
  run with compiled message sums on CPU; loaded with ``allow_pickle=False``. Without it (or without the
  kernel, or on a GPU) the TorchScript denoiser runs.

libtorch reads the same extra files (``torch::jit::load(path, device, extra_files)``), so the LAMMPS plugin
and ``icephase classify --model`` take the very same file.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .classifier import Classifier
from .configs import DenoiserConfig
from .errors import ModelFileError

if TYPE_CHECKING:  # torch takes seconds to import; reading metadata and classifiers does not need it
    import torch
from .phases import OTHER_CRYSTAL, code_table

MODEL_FORMAT = "icephase-model"
MODEL_FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
CLASSIFIER_FILE = "classifier.npz"
WEIGHTS_FILE = "denoiser_weights.npz"
COMPACT_FILE = "compact_denoiser.npz"
#: Extra reach (A) of the ghost region beyond the model's receptive field: denoising moves atoms by up to
#: a few tenths of an Angstrom, so neighbours can enter the cutoff during the iterations.
GHOST_MARGIN = 1.0
#: The shipped model's file name. It is package data (``icephase_lmp/models/``), so every kind of install finds
#: it: a wheel holds the file itself, a source checkout a symbolic link to the repository's ``models/``.
SHIPPED_MODEL_NAME = "icephase-7phase.pth"
#: The shipped model with a denoiser fine-tuned to converge in 4 iterations instead of 8: about half the
#: cost of a call, at a price measured in docs/validation.md ("A faster model"); not the default.
FAST_MODEL_NAME = "icephase-7phase-fast.pth"
#: The seven phases plus ice V, ice XII, sII, sH and ice IV: for high-pressure ices and hydrates, at about
#: 1.15x the cost per call and with narrower margins (models/README.md, docs/validation.md); not the default.
EXTENDED_MODEL_NAME = "icephase-12phase.pth"
#: Shipped files that a later one replaced: a name asked for gets an error that names its successor.
REPLACED_MODEL_NAMES = {"icephase-11phase.pth": EXTENDED_MODEL_NAME}
#: Every model file that ships with the package. Wherever a model path is taken, these names (with or
#: without ".pth") work.
SHIPPED_MODEL_NAMES = (SHIPPED_MODEL_NAME, FAST_MODEL_NAME, EXTENDED_MODEL_NAME)


def shipped_model_path() -> Path:
    """The path of the model that ships with the package (``importlib.resources``: wheel, editable or checkout)."""
    return Path(str(resources.files("icephase_lmp") / "models" / SHIPPED_MODEL_NAME))


#: Where the shipped model lives in this installation.
SHIPPED_MODEL = shipped_model_path()


@dataclass
class IcephaseModel:
    """A loaded model file: what :func:`load_model` returns and :class:`~icephase_lmp.pipeline.Pipeline` runs."""

    #: the TorchScript denoiser (what the LAMMPS compute runs on a GPU, or for a file without compact constants); None while :func:`load_model` has left it in the
    #: file because the offline pipeline does not need it (``denoiser`` loads it on first use)
    torchscript: "torch.jit.ScriptModule | None"
    classifier: Classifier
    metadata: dict
    path: Path
    #: the denoiser's trainable weights by state-dict name (for fine-tuning and re-saving a frozen
    #: denoiser); None for a file written before the denoiser was frozen
    weights: "dict[str, np.ndarray] | None" = None
    #: the compact denoiser's constants (compact_denoiser.to_arrays); None: a nequip denoiser, or a file
    #: written before they were stored
    compact: "dict[str, np.ndarray] | None" = None
    #: the torch device the TorchScript denoiser is (or will be) loaded on
    device: str = "cpu"
    _kernel_denoiser: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def denoiser(self) -> "torch.jit.ScriptModule":
        """The TorchScript denoiser, loaded from the file on first use where :func:`load_model` left it there."""
        if self.torchscript is None:
            self.torchscript = _load_torchscript(self.path, self.device)
        return self.torchscript

    def runs_kernel(self, device: str = "cpu") -> bool:
        """Whether the offline pipeline denoises with the compiled kernel here (see :meth:`offline_denoiser`)."""
        from . import denoiser_kernel

        return self.compact is not None and str(device) == "cpu" and denoiser_kernel.available()

    def offline_denoiser(self, device: str = "cpu"):
        """What the offline pipeline runs: on CPU, where the file has the compact constants and the compiled
        kernel was built, the compact denoiser in numpy with compiled message sums (denoiser_kernel.py: the
        same eps to ~1e-5 A, cheaper, and no torch needed); otherwise the TorchScript denoiser."""
        if not self.runs_kernel(device):
            return self.denoiser
        if self._kernel_denoiser is None:
            from .denoiser_kernel import KernelDenoiser

            self._kernel_denoiser = KernelDenoiser(self.compact)
        return self._kernel_denoiser

    def network_weights(self) -> "dict[str, np.ndarray]":
        """The training network's weights: ``weights``, or, in a file from before denoisers were frozen, the
        scripted denoiser's own state."""
        return self.weights if self.weights is not None else state_arrays(self.denoiser)

    @property
    def r_max(self) -> float:
        """The denoiser's cutoff, Angstrom."""
        return float(self.metadata["r_max"])

    @property
    def iterations(self) -> int:
        """Default denoising iterations."""
        return int(self.metadata["iterations"])

    @property
    def tolerance(self) -> float:
        """Default early-stop step size, Angstrom (0: never stop early)."""
        return float(self.metadata["tolerance"])


def build_metadata(
    config: DenoiserConfig, classifier: Classifier, iterations: int, tolerance: float, training: dict
) -> dict:
    """The ``metadata.json`` of a new model file: the denoiser's architecture and cutoffs (Angstrom), the
    ghost cutoff they imply, the default ``iterations`` and ``tolerance`` (Angstrom), the classifier's
    settings, thresholds and phase codes, and ``training`` (what the denoiser was trained with)."""
    from . import __version__

    receptive = config.receptive_field
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "icephase_version": __version__,
        "species": ["O"],
        "length_unit": "Angstrom",
        "r_max": config.r_max,
        "num_layers": config.num_layers,
        "receptive_field": receptive,
        # Each denoising step needs every neighbour within num_layers * r_max of a centre; SOAP needs its
        # reach (r_cut plus DScribe's Gaussian padding).
        "ghost_cutoff": max(receptive, classifier.soap.reach) + GHOST_MARGIN,
        "iterations": iterations,
        "tolerance": tolerance,
        "soap": classifier.header()["soap"],
        "metric": classifier.metric,
        "thresholds": classifier.thresholds,
        "boundary": classifier.boundary.to_dict(),
        "phase_vote": classifier.phase_vote.to_dict(),
        # the model's own codes; "other crystal" is the package's (the compute reads it from lammps_bridge)
        "phases": [{"code": c, "name": n} for c, n in code_table(classifier.names).items() if c != OTHER_CRYSTAL],
        "denoiser": config.to_dict(),
        "training": training,
    }


def state_arrays(module: "torch.nn.Module") -> "dict[str, np.ndarray]":
    """A module's state as numpy arrays by state-dict name (what ``denoiser_weights.npz`` holds)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def save_model(
    path: str | Path, denoiser: "torch.jit.ScriptModule", classifier: Classifier, metadata: dict,
    weights: "dict[str, np.ndarray] | None" = None, compact: "dict[str, np.ndarray] | None" = None,
) -> Path:
    """Write a model file: the frozen TorchScript denoiser with ``denoiser_weights.npz``, ``metadata.json``
    and ``classifier.npz`` beside it.

    The file is written next to ``path`` and renamed onto it when complete, so an existing model is only
    ever replaced by a whole one. Missing parent folders are created.

    Parameters
    ----------
    path : str or pathlib.Path
        The model file to write (``.pth``).
    denoiser : torch.jit.ScriptModule
        The scripted denoiser, frozen here; or, with ``weights``, one already frozen (from :func:`load_model`).
    classifier : Classifier
        The fitted classifier.
    metadata : dict
        From :func:`build_metadata` (or :func:`read_metadata` of the model it derives from).
    weights : dict of numpy.ndarray, optional
        The trainable weights of a denoiser that is already frozen (``IcephaseModel.weights``); the
        denoiser is then stored as it is.
    compact : dict of numpy.ndarray, optional
        The compact denoiser's constants (``denoiser_network.inference_module``, ``IcephaseModel.compact``),
        stored as ``compact_denoiser.npz`` for the offline pipeline's compiled kernel.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import torch

    if weights is None:  # a scripted denoiser: keep its weights for fine-tuning, then freeze it
        weights = state_arrays(denoiser)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            denoiser = torch.jit.freeze(denoiser.eval())
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    extra = {METADATA_FILE: json.dumps(metadata, indent=2), CLASSIFIER_FILE: classifier.to_bytes(),
             WEIGHTS_FILE: buffer.getvalue()}
    if compact is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in compact.items()})
        extra[COMPACT_FILE] = buffer.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(
            denoiser,
            str(tmp),
            _extra_files=extra,
        )
    tmp.replace(path)  # never leave a half-written model under the user's name
    return path


def _archive_member(path: Path, name: str, optional: bool = False) -> bytes | None:
    """Read one extra file straight from the zip archive (no TorchScript load needed); an ``optional``
    member that is absent gives None."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.endswith(f"/extra/{name}")]
            if not members:
                if optional:
                    return None
                raise ModelFileError(
                    f"{path} is a TorchScript archive but not an icephase model (no {name}); "
                    "make one with `icephase export`"
                )
            return zf.read(members[0])
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{path} is not an icephase model file (not a TorchScript zip archive: {exc}); "
            "use a model.pth written by `icephase export`"
        ) from exc


def check_integrity(path: str | Path) -> None:
    """Every member of the archive must match the CRC-32 checksum stored with it.

    libtorch does not check them: a model whose weights were damaged on disk or in a copy loads without
    complaint and makes the denoiser throw atoms anywhere. Reading the ~4-5 MB archive once costs ~20-30 ms."""
    path = model_file_path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(
            f"{path} is damaged or not an icephase model file ({exc}); copy it again or re-export it with "
            "`icephase export`"
        ) from exc
    if bad is not None:
        raise ModelFileError(
            f"{path} is damaged: the archive member {bad} does not match its stored checksum (the file was "
            "changed on disk or in a copy); copy the model file again or re-export it with `icephase export`"
        )


def read_metadata(path: str | Path) -> dict:
    """The validated metadata of a model file, after checking the whole archive's checksums.

    Reads the archive as a zip file: no torch needed (``icephase inspect`` and ``--help`` stay fast).

    Parameters
    ----------
    path : str or pathlib.Path
        A model file written by :func:`save_model` (``icephase export``).

    Returns
    -------
    dict
        The ``metadata.json``: lengths (``r_max``, ``receptive_field``, ``ghost_cutoff``, ``tolerance``,
        SOAP ``r_cut`` and ``sigma``) in Angstrom; ``phases`` is the code table (code 0 liquid).

    Raises
    ------
    ModelFileError
        When the file does not exist, is damaged (a checksum fails), is not an icephase model, or has
        another format version.
    """
    path = model_file_path(path)
    check_integrity(path)
    try:
        meta = json.loads(_archive_member(path, METADATA_FILE))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: metadata.json is corrupt ({exc}); re-export the model") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not an icephase model (format {meta.get('format')!r})")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {meta.get('format_version')}, this icephase reads "
            f"version {MODEL_FORMAT_VERSION}: re-export it with this version's `icephase export`"
        )
    return meta


def training_reference_specs(metadata: dict) -> list[str] | None:
    """The reference specs the model's denoiser was trained on; None: the built-in seven."""
    return metadata.get("training", {}).get("config", {}).get("references") or None


def read_weights(path: str | Path, member: str = WEIGHTS_FILE) -> "dict[str, np.ndarray] | None":
    """The denoiser's trainable weights stored beside a frozen denoiser (None: a file from before, whose
    scripted denoiser holds them); with ``member=COMPACT_FILE``, the compact form's constants (None: none
    stored)."""
    path = model_file_path(path)
    stored = _archive_member(path, member, optional=True)
    if stored is None:
        return None
    try:
        with np.load(io.BytesIO(stored), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        raise ModelFileError(f"{path}: {member} is corrupt ({exc}); re-export the model") from exc


def read_classifier(path: str | Path) -> Classifier:
    """The classifier of a model file, without loading the denoiser (no torch needed)."""
    path = model_file_path(path)
    return Classifier.from_bytes(_archive_member(path, CLASSIFIER_FILE), origin=f"{path}:{CLASSIFIER_FILE}")


def load_model(path: str | Path | None = None, device: str = "cpu") -> IcephaseModel:
    """Load a model file (default: the shipped one).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The model file; ``None``: the shipped model (``SHIPPED_MODEL``).
    device : str, optional
        Torch device for the denoiser (``"cpu"``, ``"cuda"``).

    Returns
    -------
    IcephaseModel
        The denoiser, the classifier, the metadata (as :func:`read_metadata`) and the path.

    Raises
    ------
    ModelFileError
        As :func:`read_metadata`, or when the denoiser cannot be loaded.
    DeviceError
        When ``device`` is CUDA and torch has none.
    """
    path = model_file_path(path if path is not None else SHIPPED_MODEL)
    if str(device) != "cpu":
        from .denoiser_network import check_device  # imports torch

        check_device(device)
    model = IcephaseModel(None, read_classifier(path), read_metadata(path), path, read_weights(path),
                          read_weights(path, COMPACT_FILE), str(device))
    # the TorchScript module is loaded now unless the offline pipeline will not use it: then `model.denoiser`
    # loads it when asked (export, fine-tuning), and a short `icephase classify` never imports torch
    if not model.runs_kernel(device):
        model.torchscript = _load_torchscript(path, device)
    return model


def _load_torchscript(path: Path, device: str) -> "torch.jit.ScriptModule":
    import torch

    try:
        with warnings.catch_warnings():
            # torch >= 2.10 flags TorchScript as deprecated; it is still what libtorch in LAMMPS loads.
            warnings.simplefilter("ignore", DeprecationWarning)
            denoiser = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise ModelFileError(f"{path}: the TorchScript denoiser cannot be loaded ({exc})") from exc
    # Frozen denoisers (save_model) load ~6x faster; once warmed up, frozen and scripted run equally fast
    # (89.3 vs 89.4 us per oxygen per iteration, docs/validation.md) with bit-identical outputs.
    return denoiser.eval()


def shipped_model_named(name: str) -> Path | None:
    """The shipped model called ``name`` (``icephase-7phase`` or ``icephase-7phase.pth``), else None."""
    wanted = name if name.endswith(".pth") else f"{name}.pth"
    if wanted not in SHIPPED_MODEL_NAMES:
        return None
    return Path(str(resources.files("icephase_lmp") / "models" / wanted))


def model_file_path(path: str | Path) -> Path:
    """The file a model argument names: a path, or the name of a shipped model (``icephase-12phase``, with or
    without ".pth") where no such file is in the working directory. Raises ``ModelFileError`` if none exists."""
    path = Path(path)
    named = shipped_model_named(path.name) if path.parent == Path(".") and not path.is_file() else None
    path = named or path
    replaced = REPLACED_MODEL_NAMES.get(path.name if path.name.endswith(".pth") else f"{path.name}.pth")
    if not path.is_file() and replaced and path.parent == Path("."):
        raise ModelFileError(f"the shipped model {path.name!r} was replaced by {Path(replaced).stem!r}, which names "
                             f"the same phases and more: pass --model {Path(replaced).stem}")
    if not path.is_file():
        hint = (" (the shipped model is missing from this installation: reinstall icephase-lmp, or in a checkout "
                "restore models/icephase-7phase.pth with git; or pass --model)" if path == SHIPPED_MODEL else "")
        raise ModelFileError(f"model file {str(path)!r} does not exist{hint}")
    return path
