"""Export a trained SpikeReg checkpoint to a netx HDF5 file, and prove the export on Lava.

The file is what stock ``lava.lib.dl.netx.hdf5.Network`` loads: an ``input``
layer followed by SLAYER's own ``export_hdf5`` of every conv block, which
writes 8-bit weights (SLAYER's ``quantize_8bit`` hook, the same one training
used) and Loihi's integer neuron parameters (``vThMant``, ``iDecay``,
``vDecay``). The 3-D network reaches Lava's 2-D conv through the exact depth
folding of :mod:`spikereg.networks.folding`. SpikeReg's metadata (patch
size, time steps, readout scale) rides along as a root attribute that netx
ignores.

Every export is verified: sample patches of real anatomy go through SLAYER
and through stock netx on Lava's fixed-point simulator; each layer's spikes,
patch by patch, and the readout, element by element, must be equal. The
comparison lands in ``<model>.verify.json``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from spikereg.networks.snn import METADATA_ATTR, SpikingRegNet


class ModelFileError(ValueError):
    """A file that is not an exported SpikeReg netx network."""


class VerificationError(RuntimeError):
    """Lava's output differs from SLAYER's for the exported network."""


def read_metadata(path: str | Path) -> dict:
    """The SpikeReg metadata of an exported netx file, with clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model {path}: file not found")
    if not h5py.is_hdf5(path):
        raise ModelFileError(f"model {path}: not an HDF5 file (expected a netx network from 'spikereg export')")
    try:
        with h5py.File(path, "r") as handle:
            if "layer" not in handle:
                raise ModelFileError(f"model {path}: HDF5 file has no 'layer' group, so it is not a netx network")
            if METADATA_ATTR not in handle.attrs:
                raise ModelFileError(
                    f"model {path}: netx file without SpikeReg metadata; export it with 'spikereg export'"
                )
            return json.loads(handle.attrs[METADATA_ATTR])
    except OSError as error:
        raise ModelFileError(f"model {path}: unreadable HDF5 file ({error})") from None


@dataclass
class Verification:
    """SLAYER vs Lava for one exported file."""

    patches: int
    time_steps_per_patch: int
    alignment: str
    layer_spikes_slayer: list[int]
    layer_spikes_lava: list[int]
    layer_mismatched_patches: list[int]
    readout_elements: int
    readout_mismatches: int
    max_abs_error: float
    precision: str
    seconds: float

    @property
    def exact(self) -> bool:
        return self.readout_mismatches == 0 and not any(self.layer_mismatched_patches)

    def to_dict(self) -> dict:
        return dict(asdict(self), exact=self.exact)


def sample_patches(net: SpikingRegNet, spacing: float, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` real-anatomy patch pairs (MNI T1 vs a randomly warped copy)."""
    from spikereg.data import load_mni, make_pair
    from spikereg.training.trainer import PatchSampler

    rng = np.random.default_rng(seed)
    base = load_mni("t1", spacing).data
    pair = make_pair(base, rng, max_displacement=net.config.max_displacement, control_spacing=8)
    batch = PatchSampler([pair], net.config.patch_size, net.reduction, rng).sample(count)
    return batch.fixed, batch.moving


def verify(net: SpikingRegNet, model_path: Path, fixed: torch.Tensor, moving: torch.Tensor,
           precision: str = "fixed") -> Verification:
    """Run the same patches through SLAYER and through stock netx on Lava; compare."""
    from lava_export.runner import LavaNetwork

    start = time.perf_counter()
    with torch.no_grad():
        spikes = net.encode(fixed, moving)
        outputs = net.layer_outputs(spikes)
        slayer_readout = net.readout_window(net(spikes)).numpy()
    slayer_layers = np.stack([o.sum(dim=(1, 2, 3, 4)).numpy() for o in outputs]).astype(np.int64)
    with LavaNetwork(model_path, window=net.window, precision=precision) as lava:
        run = lava.run(spikes[..., : net.window].numpy())
    difference = np.abs(run.readout - slayer_readout)
    return Verification(
        patches=len(fixed),
        time_steps_per_patch=net.window,
        alignment=(f"layer l answers patch k in steps [k*{net.window} + l-1, (k+1)*{net.window} + l-1); "
                   "SLAYER simulates window + layers - 1 steps per patch"),
        layer_spikes_slayer=slayer_layers.sum(axis=1).tolist(),
        layer_spikes_lava=run.layer_spikes.sum(axis=1).tolist(),
        layer_mismatched_patches=(slayer_layers != run.layer_spikes).sum(axis=1).tolist(),
        readout_elements=int(difference.size),
        readout_mismatches=int((difference > 0).sum()),
        max_abs_error=float(difference.max()),
        precision=precision,
        seconds=time.perf_counter() - start,
    )


def export_netx(
    net: SpikingRegNet,
    out: str | Path,
    *,
    spacing: float,
    run_defaults: dict | None = None,
    verify_patches: int = 4,
    precision: str = "fixed",
) -> Verification | None:
    """Write ``out`` (netx HDF5) and, unless ``verify_patches`` is 0, ``out.verify.json``.

    The file appears under its name only once it is complete and verified; on
    a mismatch nothing is left at ``out`` and :class:`VerificationError` is raised.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        net.export_hdf5(tmp, extra={"spacing_mm": spacing, "run": run_defaults or {}})
        result = None
        if verify_patches:
            fixed, moving = sample_patches(net, spacing, verify_patches)
            result = verify(net, tmp, fixed, moving, precision)
            report = out.with_name(out.name.removesuffix(".net") + ".verify.json")
            report.write_text(json.dumps(result.to_dict(), indent=2))
            if not result.exact:
                raise VerificationError(
                    f"export {out}: Lava differs from SLAYER in {result.readout_mismatches} of "
                    f"{result.readout_elements} readout values (see {report}); use --no-verify to keep it anyway"
                )
        tmp.replace(out)
        return result
    finally:
        tmp.unlink(missing_ok=True)
