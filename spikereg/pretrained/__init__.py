"""Models shipped with SpikeReg, so that ``spikereg run`` works with no training.

``sdnn_2mm_mixed.*`` is the default (configs/sdnn_2mm_mixed.yaml): the
2 mm sigma-delta network whose twin was trained on a mix of the template's
pairs and pairs with the variety of different scanners and subjects, fine-tuned
on the template's; ``benchmarks/accuracy.py`` and ``benchmarks/real_pairs.py``
measure it against demons and ANTs (BENCHMARKS.md, "A mixed recipe").
``sdnn_2mm.*`` is the same network trained on the template's small warps
alone (configs/sdnn_2mm.yaml), the default before it. ``sdnn_2mm_varied.*``
is that network trained further on the varied pairs alone
(configs/sdnn_2mm_varied.yaml): the best on such pairs, behind on the
template's own (BENCHMARKS.md, "An inter-subject model", "Conversion at the
chip's spike_exp").
``unet_2mm_mixed.*`` is the spiking U-Net with skip connections
(configs/unet_2mm_mixed.yaml; a graph file, which stock netx does not load and
SpikeReg's own Lava builder does): the most accurate on real brains, several
times slower than the default (BENCHMARKS.md, "The spiking U-Net, shipped").
``demo.*`` is the small, fast one ``make demo`` trains
(configs/demo.yaml, same seed), which the energy and speed benchmarks
describe. Each is ``NAME.pt`` the checkpoint, ``NAME.net`` its verified netx
export and ``NAME.verify.json`` the SLAYER-vs-Lava comparison made when it
was exported.

Each shipped model has a name (:data:`SHIPPED`) that ``--model`` (and a
checkpoint option) accepts in place of a path, as torchvision's weight names
and MONAI's bundle names are used: :func:`resolve_model`,
:func:`resolve_checkpoint`; ``spikereg models`` lists them.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from spikereg.errors import SpikeRegError

HERE = Path(__file__).resolve().parent
DEMO_MODEL = HERE / "demo.net"
DEMO_CHECKPOINT = HERE / "demo.pt"


class ShippedModel(NamedTuple):
    netx: Path        # the verified netx export, what ``--model NAME`` runs
    checkpoint: Path  # the training checkpoint it was exported from (config, ANN twin)
    description: str  # one line: what it is, its config file and voxel spacing


SHIPPED: dict[str, ShippedModel] = {
    "sdnn-2mm-mixed": ShippedModel(HERE / "sdnn_2mm_mixed.net", HERE / "sdnn_2mm_mixed.pt",
                                   "sigma-delta (SDNN) network for different subjects and scanners, accurate and "
                                   "fast; configs/sdnn_2mm_mixed.yaml, 2 mm"),
    "sdnn-2mm": ShippedModel(HERE / "sdnn_2mm.net", HERE / "sdnn_2mm.pt",
                             "the same network trained on the template's warps alone; configs/sdnn_2mm.yaml, 2 mm"),
    "sdnn-2mm-varied": ShippedModel(HERE / "sdnn_2mm_varied.net", HERE / "sdnn_2mm_varied.pt",
                                    "the same network trained further on varied pairs alone (no fine-tuning); "
                                    "configs/sdnn_2mm_varied.yaml, 2 mm"),
    "unet-2mm-mixed": ShippedModel(HERE / "unet_2mm_mixed.net", HERE / "unet_2mm_mixed.pt",
                                   "spiking U-Net with skip connections (a graph file), the most accurate on real "
                                   "brains, slower; configs/unet_2mm_mixed.yaml, 2 mm"),
    "demo": ShippedModel(DEMO_MODEL, DEMO_CHECKPOINT,
                         "CUBA-LIF rate-coded SNN, small and fast; configs/demo.yaml (make demo), 4 mm"),
}
# What `spikereg run` and `evaluate` use without --model: the best shipped configuration.
DEFAULT_NAME = "sdnn-2mm-mixed"
DEFAULT_MODEL = SHIPPED[DEFAULT_NAME].netx
DEFAULT_CHECKPOINT = SHIPPED[DEFAULT_NAME].checkpoint


class ModelNotFoundError(SpikeRegError, ValueError):
    """A model or checkpoint that is neither an existing file nor an installed shipped model."""


def shipped_name(value: str | Path) -> str | None:
    """The shipped model VALUE names; None for an existing path (a path wins, so a file called
    "demo" stays reachable) or a value that names no shipped model."""
    return None if Path(value).exists() or str(value) not in SHIPPED else str(value)


def _resolve(value: str | Path, kind: str, label: str) -> Path:
    name = shipped_name(value)
    if name is None:
        if Path(value).exists():
            return Path(value)
        raise ModelNotFoundError(f"{label} {value}: no such file, and not a shipped model name "
                                 f"(shipped: {', '.join(SHIPPED)}; 'spikereg models' lists them)")
    shipped = SHIPPED[name]
    wanted = getattr(shipped, kind)
    if not wanted.is_file():
        raise ModelNotFoundError(f"shipped model {name!r} is not installed here: {wanted} is missing "
                                 f"({shipped.description})")
    return wanted


def resolve_model(value: str | Path) -> Path:
    """The netx file ``--model VALUE`` means: an existing path as is, else a shipped model's export.

    Raises :class:`ModelNotFoundError` (a ValueError) naming the value and the shipped names,
    or naming the missing file of a shipped model whose files are not installed.
    """
    return _resolve(value, "netx", "model")


def resolve_checkpoint(value: str | Path) -> Path:
    """The checkpoint ``--checkpoint VALUE`` means: an existing path as is, else a shipped model's checkpoint."""
    return _resolve(value, "checkpoint", "checkpoint")


def shipped_models() -> list[dict]:
    """One row per shipped model for ``spikereg models``: name, description, files, presence, sizes in bytes."""
    rows = []
    for name, shipped in SHIPPED.items():
        files = {"netx": shipped.netx, "checkpoint": shipped.checkpoint}
        rows.append({
            "name": name,
            "default": name == DEFAULT_NAME,
            "description": shipped.description,
            "present": all(path.is_file() for path in files.values()),
            **{kind: str(path) for kind, path in files.items()},
            **{f"{kind}_bytes": path.stat().st_size if path.is_file() else None for kind, path in files.items()},
        })
    return rows
