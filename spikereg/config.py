"""Typed, validated YAML configuration.

A config file is a YAML mapping with the sections of :class:`Config`. Every
key is checked: unknown keys and wrong types are errors that name the file and
the dotted key (``model.time_steps``), so a typo never silently falls back to a
default. ``key=value`` overrides from the command line use the same dotted
names and are parsed as YAML scalars.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spikereg.errors import SpikeRegError
from spikereg.pretrained import SHIPPED, shipped_name
from spikereg.resources import shipped_dir


class ConfigError(SpikeRegError, ValueError):
    """A bad config file or override; the message names the file and key."""


@dataclass
class NeuronConfig:
    """Neuron parameters, in SLAYER's units (they export to Loihi fixed point).

    ``type``: ``cuba`` -- CUBA-LIF, binary spikes, Loihi 1 and 2 (SLAYER
    ``block.cuba``); ``sdnn`` -- sigma-delta ReLU, graded spikes, Loihi 2 only
    (SLAYER ``block.sigma_delta``). For ``sdnn`` the threshold is the delta
    threshold: a change smaller than it is held back (e.g. 0.03125), and the
    decays are unused.
    """

    type: str = "cuba"
    threshold: float = 1.0
    current_decay: float = 0.25
    voltage_decay: float = 0.03
    tau_grad: float = 1.0  # width of SLAYER's surrogate gradient (training only)
    scale_grad: float = 1.0  # height of SLAYER's surrogate gradient (training only)


@dataclass
class ModelConfig:
    """The spiking registration network: 3-D convolutions (folded for Lava) in a chain or a U-Net."""

    # "chain": strided convs down to a control grid (model.strides), then the readout
    # (spikereg.networks.snn); "unet": an encoder-decoder with a skip from every level and a
    # readout per voxel (spikereg.networks.unet), model.channels the widths of its levels,
    # finest first, and model.strides empty; sdnn only
    architecture: str = "chain"
    patch_size: int = 16  # cubic patch the exported network processes
    # "intensity": fixed, moving, (fixed - moving)+, (fixed - moving)-   (4 channels)
    # "intensity+force": also the +/- parts of (fixed - moving) * grad(moving) per axis (10)
    encoding: str = "intensity+force"
    channels: list[int] = field(default_factory=lambda: [8, 16])
    strides: list[int] = field(default_factory=lambda: [2, 2])
    kernel_size: int = 3
    time_steps: int = 12  # encoding window; the chip runs next_pow2(time_steps + layers)
    max_displacement: float = 3.0  # voxels represented by an output rate (sdnn: value) of 1
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    # How input values become spikes (spikereg.networks.encoding): "rate" (cuba) -- floor(x T)
    # evenly spaced spikes; "latency" (cuba) -- one spike, the brighter the earlier; "delta"
    # (sdnn) -- the value held as a graded level, sent as sigma-delta changes
    spike_code: str = "rate"
    # sdnn only, written by training, not by hand: the readout value that stands for one
    # max_displacement. Conversion rescales the twin's ReLU layers so the 8-bit weights use
    # their range (spikereg.networks.ann.AnnTwin.balanced_kernels); the readout then comes
    # out this many times larger and the host divides it out. 1 = no rescaling.
    readout_gain: float = 1.0
    # sdnn only: netx's spike_exp. Graded spikes carry 6 + spike_exp fractional bits, and a
    # sigma-delta layer's 24-bit synaptic input then holds +-2**(11 - spike_exp) in SLAYER's
    # units (spikereg.networks.bounds.summed_input_limit): 6 (netx's default) gives +-32,
    # 0 gives +-2048 with spikes on a 1/64 grid, the delta threshold's own.
    spike_exp: int = 6
    # sdnn only, per hidden layer: the value its activation saturates at (0: a plain ReLU).
    # A saturated layer is two populations, relu(x) and relu(x - c), that the next layer
    # takes with weights W and -W: it receives W clamp(x, 0, c), so its input is bounded
    # whatever the image (spikereg.networks.bounds). Written by conversion, not by hand.
    clamp: list[float] = field(default_factory=list)
    # unet only: the readout's bias, in the twin's units (conversion scales it with the readout). Each
    # (+, -) readout pair then starts in its linear range: a ReLU readout without it dies whole within
    # a few hundred steps (measured), and the U-Net learns nothing
    readout_bias: float = 0.0

    @property
    def in_channels(self) -> int:
        return ENCODINGS[self.encoding]

    @property
    def reduction(self) -> int:
        """Voxels per control point along each axis (a U-Net reads out every voxel)."""
        reduction = 1
        for stride in self.strides if self.architecture == "chain" else ():
            reduction *= stride
        return reduction


ARCHITECTURES = ("chain", "unet")
ENCODINGS = {"intensity": 4, "intensity+force": 10}
SPIKE_CODES = {"cuba": ("rate", "latency"), "sdnn": ("delta",)}  # neuron type -> input codes it takes


@dataclass
class DataConfig:
    """Synthetic training pairs built from the MNI ICBM152 template."""

    spacing: float = 4.0  # mm
    max_displacement: float = 3.0  # voxels, of the ground-truth field
    control_spacing: int = 8  # voxels between the random field's control points
    noise_std: float = 0.02
    pairs: int = 64  # pairs generated before training; patches are drawn from them
    deformation: str = "bspline"  # bspline (small displacement) | diffeomorphic (integrated velocity field)
    bias_field: float = 0.0  # largest log-gain of a smooth multiplicative intensity bias per image
    gamma_std: float = 0.0  # contrast change: image ** g with log g ~ N(0, gamma_std)
    # Inter-subject variety (spikereg.data.synth.make_pair); 0 switches each off.
    coarse_displacement: float = 0.0  # voxels: a second, smooth field on a coarse grid, added to both fields
    coarse_control_spacing: int = 32  # voxels between the coarse field's control points
    affine_rotation: float = 0.0  # degrees: random affine residual in the ground truth (each axis)
    affine_scale: float = 0.0  # fraction: per-axis scale 1 +- this
    affine_shift: float = 0.0  # voxels: translation per axis
    synth_fraction: float = 0.0  # share of pairs synthesized from tissue maps (SynthMorph-style), not the T1
    contrast_jitter: float = 0.05  # synthesized pairs: per-image spread of the pair's class intensities
    # Share of pairs drawn as the template recipe (the T1, no contrast or bias change, no coarse field or
    # affine residual), the rest with the variety above: one training set that holds both kinds of pair.
    plain_fraction: float = 0.0


DEFORMATIONS = ("bspline", "diffeomorphic")  # spikereg.data.synth.DEFORMATIONS (a test keeps them equal)


@dataclass
class LossConfig:
    """Weights of the training loss terms (spikereg.losses); 0 switches a term off.

    The defaults are the supervised loss the shipped model was trained with.
    Image terms compare the moving patch, warped by the predicted field
    (control grid upsampled to voxels), with the fixed patch.
    """

    displacement: float = 1.0  # MSE of control points vs the ground-truth field (units of model.max_displacement)
    mse: float = 0.0  # image mean squared error
    lncc: float = 0.0  # local normalised cross-correlation (MONAI; -1 is a perfect match)
    mi: float = 0.0  # global mutual information (MONAI; negative, lower is better)
    dice: float = 0.0  # Dice of warped one-hot tissue labels (grey, white matter) vs fixed ones
    bending: float = 0.0  # bending energy of the dense field (MONAI)
    diffusion: float = 0.0  # diffusion (gradient) regulariser of the dense field (MONAI)
    spike_rate: float = 0.0  # squared deviation of every layer's spike rate from train.target_spike_rate


OPTIMIZERS = ("adam", "adamw", "sgd")
FINETUNE_PAIRS = ("data", "template")
SCHEDULERS = ("cosine", "step", "none")
DEVICES = ("cpu", "cuda", "auto")


@dataclass
class TrainConfig:
    steps: int = 300  # SNN fine-tuning steps; 0 (with ann_steps > 0) keeps the converted twin as is
    batch_size: int = 8  # global batch: under torchrun each process takes a share of it
    learning_rate: float = 3e-3
    seed: int = 0
    checkpoint_every: int = 100
    grad_clip: float = 1.0
    ann_steps: int = 0  # pre-train the ANN twin this many steps and start the SNN from its kernels
    twin_from: str = ""  # or start from the ANN twin stored in this checkpoint (ann_steps is then not run)
    # or train the twin ann_steps more from the one stored in this checkpoint (on this config's pairs)
    twin_init: str = ""
    # pairs the converted SNN is calibrated and fine-tuned on: "data" (the data keys, as the twin) or
    # "template" (the same keys without the inter-subject variety: spikereg.data.sampling.template_recipe)
    finetune_pairs: str = "data"
    ann_learning_rate: float = 1e-3
    ann_scheduler: str = "none"  # none | cosine (from ann_learning_rate to 5 % of it over ann_steps)
    # every this many twin steps: its validation error in twin_log.csv and the twin in checkpoints/twin.pt
    # (a checkpoint train.twin_from takes); 0 = only at the end
    ann_checkpoint_every: int = 0
    # sdnn twins: weight of spikereg.losses.summed_input_range_loss (keeps negative summed inputs
    # within each layer's positive range, so conversion keeps the 8-bit weights fine); 0 = off
    ann_range_weight: float = 0.0
    # sdnn fine-tuning: weight of spikereg.losses.summed_input_bound_loss (keeps every layer's summed
    # inputs within the bound conversion gave them, so they fit Lava's 24-bit range); 0 = off
    snn_range_weight: float = 1.0
    loss: LossConfig = field(default_factory=LossConfig)
    target_spike_rate: float = 0.1  # spikes per neuron per step that the spike_rate term pulls towards
    lncc_kernel_size: int = 5  # odd window (voxels) of the lncc term
    mi_bins: int = 23  # histogram bins of the mi term (MONAI's default)
    optimizer: str = "adam"  # adam | adamw | sgd (the ANN twin uses the same kind, at ann_learning_rate)
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    scheduler: str = "cosine"  # cosine (to 0 over train.steps) | step | none; SNN stage only
    scheduler_step: int = 250  # step scheduler: multiply the rate by scheduler_gamma every this many steps
    scheduler_gamma: float = 0.5
    tensorboard: bool = True  # event files in <out>/tensorboard (needs the tensorboard package)
    device: str = "cpu"  # cpu | cuda | auto (cuda where available)


@dataclass
class RunConfig:
    iterations: int = 2  # residual refinement passes (warp, predict, compose)
    patch_stride: int = 8  # overlap between neighbouring patches
    # Gaussian sigma (voxels) applied to each iteration's residual field before it is composed,
    # as demons smooths its update ("fluid" regularisation); 0 = none. Measured at 2 mm (3 pairs,
    # ANN twin of configs/sdnn_2mm.yaml, 8 iterations): EPE 0.391 -> 0.343 voxel with 2.5.
    smoothing: float = 0.0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: Any, where: str, source: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: '{where or 'top level'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{source}: unknown key '{key}' (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in values.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key, source)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        return [_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise ConfigError(f"{source}: '{key}' must be {hint.__name__}, got {value!r}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _merge(base: dict, update: dict) -> dict:
    """``update`` laid over ``base``: mappings merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


#: The shipped configs: ``configs/`` in the repository, ``spikereg/configs/`` in the wheel.
CONFIG_DIR: Path = shipped_dir("configs")


def shipped_configs() -> list[str]:
    """Names of the shipped configs (``demo``: ``configs/demo.yaml``), which ``--config`` takes for a path."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []


def resolve_config(value: str | Path) -> Path:
    """The file ``--config VALUE`` means: an existing file as is (a path wins, so a file called
    "demo" stays reachable), else a bare name (no folder, no .yaml) of a shipped config.

    A path-like value (a folder separator, a .yaml or .yml suffix) is returned as it is, found
    or not (reading it says "file not found"); a bare name that is no shipped config raises
    :class:`ConfigError` listing the shipped names.
    """
    path = Path(value)
    text = str(value)
    if path.is_file() or "/" in text or "\\" in text or path.suffix in (".yaml", ".yml"):
        return path  # a file, or meant as one: _read_yaml says if it is missing
    shipped = CONFIG_DIR / f"{text}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_configs()) or f"none found in {CONFIG_DIR}"
    raise ConfigError(f"config {text!r}: no such file, and not a shipped config name (shipped: {names})")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config {path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        # the line (and what yaml found there) is what lets a user find the typo in a long file
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config {path}: not valid YAML{where} ({problem or error.__class__.__name__})") from None
    _build(Config, raw, "", str(path))  # unknown keys and wrong types, named by the file that has them
    return raw


def load_config(
    path: str | Path | list[str | Path] | None = None, overrides: list[str] | None = None
) -> Config:
    """Read YAML config(s), apply ``key=value`` overrides, validate.

    ``path`` is one file, a list of files merged in order (later files win,
    key by key; lists are replaced whole), or None for the defaults. A bare
    name (``"demo"``) that is no existing file means a shipped config
    (:func:`resolve_config`, :func:`shipped_configs`).
    """
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    paths = [resolve_config(item) for item in paths]
    raw: dict = {}
    for item in paths:
        raw = _merge(raw, _read_yaml(item))
    source = " + ".join(str(p) for p in paths) or "defaults"
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value, e.g. train.steps=100")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override '{item}': the value is not valid YAML") from None
        single: dict = {}
        _set_dotted(single, key.strip(), value)
        _build(Config, single, "", f"override '{item}'")
        raw = _merge(raw, single)
    config = _build(Config, raw, "", source)
    validate(config, source)
    # Checked here, for a run about to start, not in validate(): a checkpoint's config records
    # the file its twin came from, which need not exist where the checkpoint is used.
    for key in ("twin_from", "twin_init"):
        value = getattr(config.train, key)
        if value and not Path(value).is_file() and shipped_name(value) is None:
            raise ConfigError(f"{source}: 'train.{key}' {value}: file not found (nor a shipped model's name: "
                              f"{', '.join(SHIPPED)})")
    return config


def validate(config: Config, source: str = "config") -> None:
    """Checks that span several keys."""
    model = config.model
    if model.encoding not in ENCODINGS:
        raise ConfigError(f"{source}: 'model.encoding' must be one of {', '.join(ENCODINGS)}, got {model.encoding!r}")
    if model.neuron.type not in SPIKE_CODES:
        raise ConfigError(f"{source}: 'model.neuron.type' must be one of {', '.join(SPIKE_CODES)}, "
                          f"got {model.neuron.type!r}")
    codes = SPIKE_CODES[model.neuron.type]
    if model.spike_code not in codes:
        raise ConfigError(f"{source}: 'model.spike_code' {model.spike_code!r} does not suit "
                          f"model.neuron.type {model.neuron.type!r}; use {' or '.join(codes)}")
    if model.readout_gain != 1.0 and model.neuron.type != "sdnn":
        raise ConfigError(f"{source}: 'model.readout_gain' applies to model.neuron.type sdnn only (a CUBA "
                          f"readout is a spike count), got {model.readout_gain} for {model.neuron.type!r}")
    if model.spike_exp != 6 and model.neuron.type != "sdnn":
        raise ConfigError(f"{source}: 'model.spike_exp' applies to model.neuron.type sdnn only, got "
                          f"{model.spike_exp} for {model.neuron.type!r}")
    if not 0 <= model.spike_exp <= 6:
        raise ConfigError(f"{source}: 'model.spike_exp' must be an integer in [0, 6], got {model.spike_exp}")
    if model.clamp:
        if model.neuron.type != "sdnn":
            raise ConfigError(f"{source}: 'model.clamp' applies to model.neuron.type sdnn only")
        if model.architecture == "chain" and len(model.clamp) != len(model.channels):
            raise ConfigError(f"{source}: 'model.clamp' needs one value per hidden layer ({len(model.channels)}, "
                              f"as model.channels), got {len(model.clamp)}")
        for value in model.clamp:
            # the file stores -c as a bias mantissa (c * 64, an integer) that Lava holds in 16 bits
            if value < 0 or value * 64 != round(value * 64) or value * 64 > 2**15 - 1:
                raise ConfigError(f"{source}: 'model.clamp' values must be multiples of 1/64 in [0, 511.98] "
                                  f"(0: no saturation), got {value}")
    if model.neuron.threshold <= 0:
        raise ConfigError(f"{source}: 'model.neuron.threshold' must be positive, got {model.neuron.threshold}")
    if model.architecture not in ARCHITECTURES:
        raise ConfigError(f"{source}: 'model.architecture' must be one of {', '.join(ARCHITECTURES)}, "
                          f"got {model.architecture!r}")
    if model.architecture == "unet":
        _validate_unet(model, source)
    elif model.readout_bias:
        raise ConfigError(f"{source}: 'model.readout_bias' applies to model.architecture unet")
    elif len(model.channels) != len(model.strides):
        raise ConfigError(f"{source}: model.channels and model.strides must have the same length")
    reduction = model.reduction
    if model.patch_size % reduction:
        raise ConfigError(
            f"{source}: model.patch_size {model.patch_size} must be a multiple of the "
            f"product of model.strides ({reduction})"
        )
    positive = {
        "model.time_steps": model.time_steps,
        "model.patch_size": model.patch_size,
        "model.max_displacement": model.max_displacement,
        "model.readout_gain": model.readout_gain,
        "train.batch_size": config.train.batch_size,
        "run.iterations": config.run.iterations,
        "run.patch_stride": config.run.patch_stride,
        "data.spacing": config.data.spacing,
        "data.pairs": config.data.pairs,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{source}: '{key}' must be positive, got {value}")
    if config.run.smoothing < 0:
        raise ConfigError(f"{source}: 'run.smoothing' must be >= 0 (0: no smoothing), got {config.run.smoothing}")
    if config.run.patch_stride % reduction or config.run.patch_stride > model.patch_size:
        raise ConfigError(
            f"{source}: run.patch_stride must be a multiple of {reduction} and at most "
            f"model.patch_size ({model.patch_size})"
        )
    _validate_data(config, source)
    _validate_train(config, source)


def _validate_unet(model: ModelConfig, source: str) -> None:
    """A U-Net halves the patch once per level below the first; it is a sigma-delta graph."""
    if model.neuron.type != "sdnn":
        raise ConfigError(f"{source}: 'model.architecture' unet is built for model.neuron.type sdnn, "
                          f"got {model.neuron.type!r}")
    if model.strides:
        raise ConfigError(f"{source}: 'model.strides' applies to architecture chain; a U-Net's levels halve the "
                          f"patch (give strides: []), got {model.strides}")
    levels = len(model.channels)
    if levels < 2:
        raise ConfigError(f"{source}: 'model.channels' of a U-Net needs one width per level, at least 2, "
                          f"got {model.channels}")
    if model.patch_size % (1 << (levels - 1)) or model.patch_size >> (levels - 1) < 2:
        raise ConfigError(f"{source}: 'model.patch_size' {model.patch_size} must be a multiple of "
                          f"{1 << (levels - 1)} (halved {levels - 1} times) and leave at least 2 voxels "
                          "at the coarsest level")
    if model.kernel_size != 3:
        raise ConfigError(f"{source}: 'model.kernel_size' of a U-Net is 3, got {model.kernel_size}")
    if model.readout_bias < 0:
        raise ConfigError(f"{source}: 'model.readout_bias' must be >= 0 (it keeps the readout's pairs in their "
                          f"linear range), got {model.readout_bias}")
    if model.clamp and len(model.clamp) != 2 * levels + 1:
        raise ConfigError(f"{source}: 'model.clamp' of a U-Net needs one value per hidden node "
                          f"({2 * levels + 1}: encoders, bottleneck, decoders), got {len(model.clamp)}")


def _validate_data(config: Config, source: str) -> None:
    data = config.data
    if data.deformation not in DEFORMATIONS:
        raise ConfigError(f"{source}: 'data.deformation' must be one of {', '.join(DEFORMATIONS)}, "
                          f"got {data.deformation!r}")
    for key, value in {"data.max_displacement": data.max_displacement, "data.noise_std": data.noise_std,
                       "data.bias_field": data.bias_field, "data.gamma_std": data.gamma_std,
                       "data.coarse_displacement": data.coarse_displacement,
                       "data.affine_rotation": data.affine_rotation, "data.affine_scale": data.affine_scale,
                       "data.affine_shift": data.affine_shift, "data.contrast_jitter": data.contrast_jitter}.items():
        if not value >= 0:
            raise ConfigError(f"{source}: '{key}' must be >= 0, got {value}")
    for key, value in {"data.control_spacing": data.control_spacing,
                       "data.coarse_control_spacing": data.coarse_control_spacing}.items():
        if value < 1:
            raise ConfigError(f"{source}: '{key}' must be positive, got {value}")
    for key, value in {"data.synth_fraction": data.synth_fraction, "data.plain_fraction": data.plain_fraction}.items():
        if not 0 <= value <= 1:
            raise ConfigError(f"{source}: '{key}' must be in [0, 1] (a share of the pairs), got {value}")
    if not data.affine_scale < 0.5 or not data.affine_rotation <= 45:
        raise ConfigError(f"{source}: 'data.affine_scale' must be < 0.5 and 'data.affine_rotation' <= 45 degrees "
                          "(a residual after affine pre-alignment), got "
                          f"{data.affine_scale} and {data.affine_rotation}")


def _validate_train(config: Config, source: str) -> None:
    train = config.train
    choices = {"train.optimizer": (train.optimizer, OPTIMIZERS), "train.scheduler": (train.scheduler, SCHEDULERS),
               "train.ann_scheduler": (train.ann_scheduler, ("none", "cosine")),
               "train.device": (train.device, DEVICES), "train.finetune_pairs": (train.finetune_pairs, FINETUNE_PAIRS)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(allowed)}, got {value!r}")
    positive = {
        "train.learning_rate": train.learning_rate, "train.ann_learning_rate": train.ann_learning_rate,
        "train.checkpoint_every": train.checkpoint_every, "train.grad_clip": train.grad_clip,
        "train.scheduler_step": train.scheduler_step, "train.scheduler_gamma": train.scheduler_gamma,
        "train.lncc_kernel_size": train.lncc_kernel_size,
    }
    non_negative = {"train.ann_steps": train.ann_steps, "train.ann_range_weight": train.ann_range_weight,
                    "train.ann_checkpoint_every": train.ann_checkpoint_every,
                    "train.snn_range_weight": train.snn_range_weight,
                    "train.weight_decay": train.weight_decay,
                    "train.momentum": train.momentum}
    non_negative.update({f"train.loss.{name}": weight for name, weight in asdict(train.loss).items()})
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{source}: '{key}' must be positive, got {value}")
    # steps 0: the SNN is the converted ANN twin, not fine-tuned -- so there must be a twin
    if train.steps < 0 or (train.steps == 0 and not (train.ann_steps > 0 or train.twin_from)):
        raise ConfigError(f"{source}: 'train.steps' must be positive, or 0 with train.ann_steps > 0 (the SNN is then "
                          f"the converted ANN twin, not fine-tuned), got train.steps {train.steps} with "
                          f"train.ann_steps {train.ann_steps}")
    for key, value in non_negative.items():
        if not value >= 0:
            raise ConfigError(f"{source}: '{key}' must be >= 0, got {value}")
    if train.twin_init and train.twin_from:
        raise ConfigError(f"{source}: 'train.twin_init' and 'train.twin_from' exclude each other (twin_from takes a "
                          "twin as it is, twin_init trains one further); give one")
    if train.twin_init and not train.ann_steps > 0:
        raise ConfigError(f"{source}: 'train.twin_init' trains the stored twin further: it needs train.ann_steps > 0, "
                          f"got {train.ann_steps} (to take the twin as it is, use train.twin_from)")
    if not any(asdict(train.loss).values()):
        raise ConfigError(f"{source}: every train.loss weight is 0; give at least one term a positive weight")
    if not 0 <= train.target_spike_rate <= 1:
        raise ConfigError(f"{source}: 'train.target_spike_rate' must be in [0, 1] (spikes per neuron per step), "
                          f"got {train.target_spike_rate}")
    # the size bound only matters where the term is used: a model's metadata (patch 4, say)
    # must still load with the default kernel when lncc is off
    if train.lncc_kernel_size % 2 == 0 or (train.loss.lncc > 0 and train.lncc_kernel_size > config.model.patch_size):
        raise ConfigError(f"{source}: 'train.lncc_kernel_size' must be odd and at most model.patch_size "
                          f"({config.model.patch_size}), got {train.lncc_kernel_size}")
    if train.mi_bins < 2:
        raise ConfigError(f"{source}: 'train.mi_bins' must be at least 2, got {train.mi_bins}")


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_from_dict(values: dict, source: str = "checkpoint") -> Config:
    config = _build(Config, values, "", source)
    validate(config, source)
    return config
