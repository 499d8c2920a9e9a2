"""Registration accuracy on held-out real-anatomy pairs: SpikeReg and its peers side by side.

Methods, on the same pairs in one run (each only where it can run here):

* identity (no registration);
* SimpleITK diffeomorphic demons (``pip install SimpleITK``, the ``bench`` extra);
* ANTs SyN (antspyx, the ``bench`` extra; ``antspyx==0.5.4`` keeps numpy < 2);
* the ANN twin the checkpoint's SNN was converted from (stored in checkpoints
  since ``spikereg train`` keeps it; older checkpoints, such as the shipped
  ``demo.pt``, get it retrained the way ``spikereg train`` trained it);
* the SNN on the exported netx file, in SLAYER (``--backend torch``: the
  file's 8-bit weights, the spikes Lava produces, which every export verifies);
* the same SNN on Lava's fixed-point CPU simulator (``--backend sim``), on the
  first ``--lava-pairs`` pairs only: it costs minutes per pair.

Every method's field goes through :func:`spikereg.evaluation.measure_pair`,
the code ``spikereg evaluate`` uses: end-point error against the ground truth
(voxels, mm), NCC, tissue Dice and HD95 (grey and white matter warped with
the field), SDlogJ and % voxels with Jacobian <= 0, over the fixed brain mask.

    .venv/bin/python benchmarks/accuracy.py --pairs 5 --write
    .venv/bin/python benchmarks/accuracy.py --spacing 2 --pairs 20 --lava-pairs 0 --write   # 2 mm
    .venv/bin/python benchmarks/accuracy.py --checkpoint runs/x/checkpoints/best.pt --model runs/x/x.net \
        --spacing 2 --pairs 20 --lava-pairs 20 --iterations 3 --pyramid 2 --csv runs/x/accuracy.csv
    # a U-Net (model.architecture unet: its GraphTwin, its graph file), as its own section
    .venv/bin/python benchmarks/accuracy.py --checkpoint runs/unet/checkpoints/best.pt --model runs/unet/U.net \
        --spacing 2 --pairs 20 --lava-pairs 2 --section "## Registration accuracy: the spiking U-Net" --write

The model may be a chain (``SpikingRegNet``, its ``AnnTwin``) or a U-Net
(``GraphRegNet``, its ``GraphTwin``, a graph file): the SNN rows run through
``open_backend`` either way, the twin's through :class:`AnnBackend`.

Pairs are made in memory from a seed training never used (``--seed``; MNI
T1, B-spline fields of the checkpoint's magnitude), or read from a dataset
folder (``--data DIR --split test``, e.g. from ``spikereg data synth``).
``--iterations``, ``--patch-stride`` and ``--pyramid`` override the
checkpoint's run settings for every SNN and ANN row. ``--csv`` writes each
method's metrics per pair (one row per pair and method; ``# key: <json>``
header lines record the settings, notes, exact command, machine and load;
pandas: ``read_csv(path, comment="#")``). ``--write`` replaces the
``## Registration accuracy`` section of BENCHMARKS.md (``--section`` names
another, e.g. a second model's, leaving that one as it is).

The Lava rows cost minutes per pair, so a run can be split over processes:
``--shard K/N`` registers only the pairs whose index i has i % N == K (the
same pairs, drawn from the same seed; ``--lava-pairs M`` still means the first
M pairs of the whole set) and writes its rows with ``--csv``; ``--merge``
then builds the table from the shards' CSVs alone, through the code that
builds an unsharded run's table, and with ``--write`` puts every shard's
command and machine into the section:

    for k in 0 1; do .venv/bin/python benchmarks/accuracy.py --spacing 2 --pairs 20 --lava-pairs 20 \
        --shard $k/2 --csv runs/acc_$k.csv & done; wait
    .venv/bin/python benchmarks/accuracy.py --merge runs/acc_0.csv runs/acc_1.csv --write
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accuracy_csv import LAVA, TORCH, coverage, merge_csvs, parse_shard, write_csv
from sections import BENCHMARKS, heading, read_section, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Registration accuracy"
COLUMNS = (("epe_vox", "EPE (vox)", 3), ("epe_mm", "EPE (mm)", 3), ("dice", "tissue Dice", 4),
           ("hd95_mm", "HD95 (mm)", 2), ("ncc", "NCC", 4), ("sdlogj", "SDlogJ", 3),
           ("jacobian_nonpositive_pct", "% Jacobian <= 0", 3), ("seconds", "s / pair", 2))


@dataclass
class BenchPair:
    """One held-out pair as arrays, with its ground truth."""

    name: str
    fixed: np.ndarray
    moving: np.ndarray
    fixed_labels: np.ndarray
    moving_labels: np.ndarray
    ddf: np.ndarray
    spacing: tuple[float, float, float]
    index: int = 0  # its place in the whole set (what --shard and --lava-pairs count)


def _sitk_field_to_ddf(array: np.ndarray) -> np.ndarray:
    """SimpleITK (z, y, x, vector(x, y, z)) displacement, unit spacing -> our (3, D, H, W) voxels."""
    return np.ascontiguousarray(array[..., ::-1].transpose(3, 0, 1, 2)).astype(np.float32)


def demons(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """SimpleITK diffeomorphic demons (50 iterations, field smoothing 1.5 voxels)."""
    import SimpleITK as sitk

    f, m = sitk.GetImageFromArray(fixed.astype(np.float32)), sitk.GetImageFromArray(moving.astype(np.float32))
    filt = sitk.DiffeomorphicDemonsRegistrationFilter()
    filt.SetNumberOfIterations(50)
    filt.SetStandardDeviations(1.5)
    return _sitk_field_to_ddf(sitk.GetArrayFromImage(filt.Execute(f, m)))


def ants_syn(fixed: np.ndarray, moving: np.ndarray, seed: int = 0) -> np.ndarray:
    """ANTs SyN with antspyx defaults (affine then symmetric normalization), as a dense (3, D, H, W) field.

    ANTs returns an affine and a warp file; their composition is read off as a
    field by pushing each voxel-index image through both transforms (linear
    interpolation of a linear ramp is exact), so ddf(x) = T(x) - x.
    """
    import ants

    to_ants = lambda a: ants.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731 unit spacing
    f, m = to_ants(fixed), to_ants(moving)
    result = ants.registration(f, m, type_of_transform="SyN", random_seed=seed)
    grid = np.indices(fixed.shape, dtype=np.float32)
    mapped = np.stack([ants.apply_transforms(f, to_ants(grid[k]), result["fwdtransforms"],
                                             interpolator="linear").numpy() for k in range(3)])
    ddf = (mapped - grid).astype(np.float32)
    # Points T(x) outside the moving volume read the index images' 0 padding:
    # there the field is unknown, so clamp it to where it sends x into the volume.
    upper = (np.array(fixed.shape, dtype=np.float32) - 1).reshape(3, 1, 1, 1)
    return np.clip(grid + ddf, 0, upper) - grid


class AnnBackend:
    """The ANN twin (a chain's ``AnnTwin`` or a U-Net's ``GraphTwin``) behind the SNN backends' patch interface.

    Patch size and readout grid come from the twin's own config: a chain's
    twin predicts control points (``reduction`` voxels apart), a U-Net's a
    displacement per voxel (reduction 1).
    """

    name = "ann"

    def __init__(self, twin) -> None:
        from spikereg.registration.register import BackendStats

        model = twin.config
        self.twin, self.patch_size, self.reduction, self.stats = twin, model.patch_size, model.reduction, BackendStats()
        # patches per forward pass: 64 patches of 16^3 voxels, as many voxels for larger patches (32^3: 8), so
        # that a U-Net's full-resolution layers stay within the memory the chain's twin takes
        self.chunk_size = max(1, 64 * 16**3 // model.patch_size**3)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def reset(self) -> None:
        pass  # an ANN keeps no state between patches

    @torch.no_grad()
    def predict(self, fixed, moving, progress=None):
        step = self.chunk_size
        return np.concatenate([self.twin.predict(fixed[i:i + step], moving[i:i + step]).numpy()
                               for i in range(0, len(fixed), step)])


def model_files(model: str | Path, checkpoint: str | Path | None, need_checkpoint: str | None = None
                ) -> tuple[Path, Path | None]:
    """(model file, checkpoint) that ``--model`` and ``--checkpoint`` mean, checked to be one network, before any work.

    Each is a path or a shipped model's name; a shipped name given as
    ``--model`` brings its own checkpoint where none is given. A model file
    without one: None, or, where ``need_checkpoint`` says what needs it, a
    ValueError naming that.
    """
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import resolve_checkpoint, resolve_model, shipped_name
    from spikereg.training.trainer import load_checkpoint

    path = resolve_model(model)
    checkpoint = checkpoint if checkpoint is not None else shipped_name(model)
    if checkpoint is None:
        if need_checkpoint:
            raise ValueError(f"--model {model}: a model file needs --checkpoint, the checkpoint it was exported "
                             f"from ({need_checkpoint})")
        return path, None
    checkpoint = resolve_checkpoint(checkpoint)
    check_same_model(load_checkpoint(checkpoint)[1].model, read_metadata(path), checkpoint, path)
    return path, checkpoint


def check_same_model(model, meta: dict, checkpoint: Path, path: Path) -> None:
    """Refuse a checkpoint (config ``model``) and a model file (metadata ``meta``) that are not one network.

    The twin comes from the checkpoint, the SNN rows from the file: a U-Net's
    file with a chain's checkpoint (or another patch size) would compare two
    different models as if one were the other's twin.
    """
    theirs = {"architecture": meta["model"].get("architecture", "chain"), "patch_size": meta["model"]["patch_size"],
              "reduction": meta.get("reduction", 1)}
    ours = {"architecture": model.architecture, "patch_size": model.patch_size, "reduction": model.reduction}
    if theirs != ours:
        differing = ", ".join(f"{key} {ours[key]} vs {theirs[key]}" for key in ours if ours[key] != theirs[key])
        raise ValueError(f"--checkpoint {checkpoint} and --model {path} are not the same network ({differing})")


def _lava_progress(stage: str, done: int, total: int, spikes: int) -> None:
    """Lava's simulator takes minutes per pair: a line on stderr at every further quarter of a pass's patches."""
    quarter = 4 * done // total
    if quarter > getattr(_lava_progress, "quarter", 0) or done == total:
        print(f"  {stage}: {done}/{total} patches", file=sys.stderr, flush=True)
    _lava_progress.quarter = 0 if done == total else quarter


def held_out_pairs(args, config, keep=lambda index: True) -> tuple[list[BenchPair], str]:
    """The pairs whose index ``keep`` accepts, and a sentence saying where the whole set comes from.

    Every pair is still drawn from the seed (and skipped pairs' random numbers
    consumed), so a shard's pairs are exactly those of the unsharded set.
    """
    from spikereg.data import load_dataset, load_mni, make_pair, tissue_labels

    if args.data is not None:
        dataset = load_dataset(args.data, args.split or None)
        pairs = []
        count = min(args.pairs, len(dataset))
        for index in filter(keep, range(count)):
            pair = dataset.load(index)
            if pair.ddf is None or pair.fixed_labels is None or pair.moving_labels is None:
                raise SystemExit(f"{args.data}: pair {pair.name} needs labels and a ground-truth ddf")
            pairs.append(BenchPair(pair.name, pair.fixed.data, pair.moving.data, pair.fixed_labels.data,
                                   pair.moving_labels.data, pair.ddf, pair.fixed.spacing, index))
        return pairs, f"{count} pairs of `{args.data}` ({dataset.layout} layout, split {args.split})"
    if args.recipe is not None:
        return recipe_pairs(args, keep)
    spacing = args.spacing or config.data.spacing
    base = load_mni("t1", spacing)
    labels = tissue_labels(spacing).data
    rng = np.random.default_rng(args.seed)
    pairs = []
    for index in range(args.pairs):
        pair = make_pair(base.data, rng, max_displacement=config.data.max_displacement,
                         control_spacing=config.data.control_spacing, base_labels=labels,
                         noise_std=config.data.noise_std)
        if keep(index):
            pairs.append(BenchPair(f"pair_{index:03d}", pair.fixed, pair.moving, pair.fixed_labels,
                                   pair.moving_labels, pair.ddf, base.spacing, index))
    recipe = (f"{args.pairs} pairs made in memory: MNI ICBM152 T1 at {spacing:g} mm, anatomy varied and then "
              f"warped by random B-spline fields (max displacement {config.data.max_displacement:g} voxels, "
              f"control points every {config.data.control_spacing} voxels, noise {config.data.noise_std:g}), "
              f"seed {args.seed}, tissue labels from the MNI grey/white-matter maps")
    return pairs, recipe


def recipe_pairs(args, keep) -> tuple[list[BenchPair], str]:
    """Pairs drawn as ``spikereg train`` draws them for the config ``--recipe`` (with ``--recipe-set`` overrides)."""
    from spikereg.config import load_config
    from spikereg.data.sampling import synthetic_pairs

    recipe = load_config(args.recipe, args.recipe_set)
    spacing = recipe.data.spacing
    drawn = synthetic_pairs(recipe, args.pairs, args.seed, labels=True)
    pairs = [BenchPair(f"pair_{index:03d}", p.fixed, p.moving, p.fixed_labels, p.moving_labels, p.ddf,
                       (spacing,) * 3, index) for index, p in enumerate(drawn) if keep(index)]
    overrides = f" with {', '.join(args.recipe_set)}" if args.recipe_set else ""
    return pairs, (f"{args.pairs} pairs drawn as training draws them for `{args.recipe}`{overrides} "
                   f"(seed {args.seed}, which training never uses), tissue labels from the MNI grey/white-matter "
                   "maps warped with them")


def pair_count(args) -> int:
    """How many pairs the whole set has (every shard's together)."""
    if args.data is None:
        return args.pairs
    from spikereg.data import load_dataset

    return min(args.pairs, len(load_dataset(args.data, args.split or None)))


def machine_line() -> str:
    """Where and under what load this process ran (read at its end)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?")
    threads = torch.get_num_threads()
    return (f"{len(os.sched_getaffinity(0))} cores, {cpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({threads} thread{'s' if threads != 1 else ''}); "
            f"load average (1 min) {os.getloadavg()[0]:.2f} at the end")


def summarize(records: list[dict], methods: list[str]) -> tuple[str, list[str]]:
    """The markdown table (mean of each metric over each method's pairs) and the notes the rows alone imply.

    One code path for a run and for ``--merge``: both hand their per-pair
    rows here, in pair order, so a merge of shards gives the unsharded table.
    """
    header = ("| method | pairs | " + " | ".join(title for _, title, _ in COLUMNS) + " |\n|---|---:|"
              + "---:|" * len(COLUMNS))
    lines = [header]
    for method in methods:
        results = [record for record in records if record["method"] == method]
        cells = [f"{np.nanmean([r[key] for r in results]):.{digits}f}" if results else "-"  # a shard's Lava row
                 for key, _, digits in COLUMNS]
        lines.append(f"| {method} | {len(results)} | " + " | ".join(cells) + " |")
    notes = []
    differences = [r["lava_torch_max_diff"] for r in records
                   if r["method"] == LAVA and np.isfinite(r.get("lava_torch_max_diff", np.nan))]
    if differences:
        count = f"{len(differences)} pair{'s' if len(differences) != 1 else ''}"
        notes.append(f"Lava simulator vs SLAYER on the same pairs ({count}): largest field "
                     f"difference {max(differences):.3g} voxels")
    return "\n".join(lines), notes


def written_means(heading: str = SECTION, path: Path = BENCHMARKS) -> dict[str, dict[str, float]]:
    """Each method's means as ``--write`` put them in the section ``heading`` of ``path`` ({} where none is).

    For the other benchmarks' sections, which cite a model's accuracy beside
    their own numbers (benchmarks/energy.py) rather than copy it by hand.
    """
    section = read_section(heading, path) or ""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ")]
    if not rows or rows[0] != ["method", "pairs", *(title for _, title, _ in COLUMNS)]:
        return {}
    return {cells[0]: {key: float(value) for (key, _, _), value in zip(COLUMNS, cells[2:]) if value != "-"}
            for cells in rows[1:]}


def section_text(settings: dict, table: str, notes: list[str], runs: list[dict], merge_command: str | None,
                 section: str = SECTION) -> str:
    """``section`` (``## Registration accuracy``): recipe, settings, exact commands, table, notes, machine, date."""
    pyramid = settings["pyramid"]
    if merge_command is None:
        commands = f".venv/bin/python {runs[0]['command']}"
        machines = [f"- machine: {runs[0]['machine']}\n", f"- date: {runs[0]['date']}\n"]
    elif len(runs) == 1:  # one run writing its CSV, then the section rendered from it
        commands = f".venv/bin/python {runs[0]['command']}\n.venv/bin/python {merge_command}"
        machines = [f"- {runs[0]['machine']}; {runs[0]['wall_seconds']:.0f} s wall; {runs[0]['date']}\n"]
    else:
        commands = ("# the shards as separate processes (here in parallel), then their per-pair CSVs merged\n"
                    + "".join(f".venv/bin/python {run['command']} &\n" for run in runs)
                    + f"wait\n.venv/bin/python {merge_command}")
        machines = [f"- shard {run['shard']}: {run['machine']}; {run['wall_seconds']:.0f} s wall; {run['date']}\n"
                    for run in runs]
    return (
        f"{section}\n\n{settings['recipe']}. Model `{settings['model']}` ({settings['iterations']} iterations per "
        f"level, patch stride {settings['patch_stride']}, pyramid {pyramid} level{'s' if pyramid > 1 else ''}, "
        f"residual smoothing {settings.get('smoothing', 0.0):g} voxels, for the ANN and SNN rows alike). "
        "Every row's field is measured by `spikereg.evaluation.measure_pair` (what `spikereg evaluate` "
        "writes): EPE against the ground truth and SDlogJ / % Jacobian <= 0 over the fixed brain mask "
        "(tissue labels > 0), NCC over the same mask, tissue Dice and HD95 as the mean over grey and "
        "white matter. Seconds per pair include each method's own set-up (Lava: compile and stop).\n\n"
        f"```bash\n{commands}\n```\n\n{table}\n\n"
        + "".join(f"- {note}\n" for note in notes) + "".join(machines)
    )


def ann_twin(args, config):
    """The checkpoint's ANN twin and a sentence saying where it comes from."""
    from spikereg.training.trainer import load_twin, make_twin, retrain_twin

    twin = load_twin(args.checkpoint)
    if twin is not None:
        return twin, (f"ANN twin: the one stored in the checkpoint, which the SNN was converted from "
                      f"(its EPE on the training run's held-out patches: {twin.val_error_voxels:.3f} voxels)")
    if not config.train.ann_steps:
        return make_twin(config.model), "ANN twin: untrained (the checkpoint's run had train.ann_steps 0)"
    print("the checkpoint stores no ANN twin: retraining it ...", file=sys.stderr)
    return retrain_twin(config), (f"ANN twin: not stored in the checkpoint (written before checkpoints kept it), "
                                  f"so retrained here the way `spikereg train` trained it (same seed, pairs and "
                                  f"{config.train.ann_steps} steps)")


def merge(args, command: str) -> int:
    """``--merge``: the table (and with ``--write`` the section) from shards' per-pair CSVs, registering nothing."""
    settings, records, shards = merge_csvs(args.merge)
    methods = settings["methods"]
    table, row_notes = summarize(records, methods)
    notes = list(dict.fromkeys(note for shard in shards for note in shard["notes"])) + row_notes
    print(table)
    for note in notes:
        print(f"- {note}")
    print("pairs per method:", file=sys.stderr)
    for line in coverage(records, methods):
        print(f"  {line}", file=sys.stderr)
    if args.write:
        write_section(args.section, section_text(settings, table, notes, shards, command, args.section))
    return 0


def main(argv=None) -> int:
    from spikereg.evaluation import measure_pair
    from spikereg.pretrained import DEFAULT_CHECKPOINT, DEFAULT_MODEL, DEFAULT_NAME, shipped_name
    from spikereg.registration.backends import open_backend
    from spikereg.registration.register import check_patching, pyramid_shapes, register
    from spikereg.training.trainer import load_checkpoint

    started, start_time = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="checkpoint whose config, data recipe and ANN twin are used: a path or a shipped "
                             f"model's name ('spikereg models'; default: {DEFAULT_NAME})")
    parser.add_argument("--model", type=Path, default=None,
                        help="its export, a netx or graph (U-Net) file (the SNN rows): a path or a shipped model's "
                             f"name (default: the export of the shipped model --checkpoint names, else "
                             f"{DEFAULT_NAME}'s); refused where it is not the checkpoint's network")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--spacing", type=float, default=None, help="mm (default: the checkpoint's)")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder instead of in-memory pairs")
    parser.add_argument("--split", default="test")
    parser.add_argument("--recipe", default=None, metavar="CONFIG",
                        help="draw the pairs as training draws them for this config (a path or a shipped name)")
    parser.add_argument("--recipe-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the --recipe config, e.g. data.synth_fraction=0")
    parser.add_argument("--section", type=heading, default=SECTION,
                        help="the BENCHMARKS.md section --write replaces (default: %(default)s)")
    parser.add_argument("--lava-pairs", type=int, default=1,
                        help="the first M pairs of the whole set are also registered on Lava's simulator "
                             "(slow: minutes per pair)")
    parser.add_argument("--smoothing", type=float, default=None,
                        help="Gaussian sigma (voxels) on each iteration's residual (default: the checkpoint's "
                             "run.smoothing)")
    parser.add_argument("--torch-pairs", type=int, default=None,
                        help="pairs also registered by the SNN in SLAYER (default: all); Lava's field is compared "
                             "with SLAYER's on the pairs that have both")
    parser.add_argument("--skip", nargs="*", default=[], choices=["demons", "ants", "ann"],
                        help="peers to leave out")
    parser.add_argument("--iterations", type=int, default=None,
                        help="refinement iterations per pyramid level (default: the checkpoint's run.iterations)")
    parser.add_argument("--patch-stride", type=int, default=None,
                        help="patch stride in voxels (default: the checkpoint's run.patch_stride)")
    parser.add_argument("--pyramid", type=int, default=1, help="coarse-to-fine levels (1: full resolution only)")
    parser.add_argument("--csv", type=Path, default=None, help="write every method's per-pair metrics here")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="register only the pairs whose index i has i %% N == K (needs --csv; "
                             "run K = 0..N-1 in parallel, then --merge their CSVs)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="CSV",
                        help="build the table from shards' --csv files only, registering nothing "
                             "(settings come from the CSVs)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    command = shlex.join(["benchmarks/accuracy.py", *(argv if argv is not None else sys.argv[1:])])

    if args.merge is not None:
        if args.shard is not None or args.csv is not None:
            parser.error("--merge takes no --shard or --csv: it reads the shards' CSVs and registers nothing")
        try:
            return merge(args, command)
        except ValueError as error:
            parser.error(str(error))
    try:  # paths or shipped models' names, resolved and checked to be one network before any work
        args.model, args.checkpoint = model_files(args.model or shipped_name(args.checkpoint) or DEFAULT_MODEL,
                                                  args.checkpoint)
    except ValueError as error:
        parser.error(str(error))
    shard, shard_count = 0, 1
    if args.shard is not None:
        try:
            shard, shard_count = parse_shard(args.shard)
        except ValueError as error:
            parser.error(str(error))
        if args.write:
            parser.error(f"--shard {args.shard} with --write: a shard holds only part of the pairs; "
                         "write the section with --merge over all shards' CSVs")
        if args.csv is None:
            parser.error(f"--shard {args.shard} needs --csv: its per-pair rows are what --merge reads")
        # The shards share the machine's cores: don't let each one's torch claim them all.
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // shard_count))

    net, config = load_checkpoint(args.checkpoint)
    iterations = config.run.iterations if args.iterations is None else args.iterations
    stride = config.run.patch_stride if args.patch_stride is None else args.patch_stride
    pyramid = args.pyramid
    smoothing = config.run.smoothing if args.smoothing is None else args.smoothing
    if iterations < 1:
        parser.error(f"--iterations {iterations}: must be at least 1")
    if smoothing < 0:
        parser.error(f"--smoothing {smoothing}: must be >= 0 voxels")
    total = pair_count(args)
    pairs, recipe = held_out_pairs(args, config, keep=lambda index: index % shard_count == shard)
    if not pairs:
        parser.error(f"--shard {args.shard}: none of the {total} pairs falls to this shard" if args.shard
                     else f"--pairs {args.pairs}: no pairs to register")
    try:  # refuse bad run settings before minutes of work, not at the first SNN row
        check_patching(config.model.patch_size, net.reduction, stride)
        pyramid_shapes(pairs[0].fixed.shape, pyramid, config.model.patch_size)
    except ValueError as error:
        parser.error(str(error))
    run_settings = dict(iterations=iterations, patch_stride=stride, pyramid=pyramid, smoothing=smoothing)

    methods = ["identity"]
    notes = []
    for name, module, label in (("demons", "SimpleITK", "SimpleITK demons"), ("ants", "ants", "ANTs SyN")):
        if name in args.skip:
            continue
        try:
            __import__(module)
            methods.append(label)
        except ImportError:
            notes.append(f"{label} not run: `{module}` is not installed (`pip install -e '.[bench]'`)")
    twin = None
    if "ann" not in args.skip:
        twin, twin_note = ann_twin(args, config)
        notes.append(twin_note)
        methods.append("ANN twin")
    methods += [TORCH]
    lava_pairs = min(args.lava_pairs, total)  # the first pairs of the whole set, whichever shard holds them
    torch_pairs = total if args.torch_pairs is None else min(args.torch_pairs, total)
    if lava_pairs:
        methods.append(LAVA)
    else:
        notes.append("SNN on Lava's simulator not run (`--lava-pairs 0`): minutes per pair on 2 cores "
                     "(## Lava streaming: a 2 mm volume in about 2 minutes); the sim backend's field equals the torch "
                     "backend's (tests/spikereg/registration/test_backends.py, and every export is verified)")

    records = []
    with open_backend(args.model, "torch") as snn_torch:
        for count, pair in enumerate(pairs, 1):
            fields = {}
            for method in methods:
                if (method == LAVA and pair.index >= lava_pairs) or (method == TORCH and pair.index >= torch_pairs):
                    continue
                extra = {}
                tick = time.perf_counter()
                if method == "identity":
                    ddf = np.zeros_like(pair.ddf)
                elif method == "SimpleITK demons":
                    ddf = demons(pair.fixed, pair.moving)
                elif method == "ANTs SyN":
                    ddf = ants_syn(pair.fixed, pair.moving, seed=args.seed)
                elif method == "ANN twin":
                    ddf = register(pair.fixed, pair.moving, AnnBackend(twin), **run_settings).ddf
                elif method == TORCH:
                    ddf = register(pair.fixed, pair.moving, snn_torch, **run_settings).ddf
                else:
                    print(f"{pair.name}: Lava simulator ...", file=sys.stderr)
                    with open_backend(args.model, "sim") as lava:
                        ddf = register(pair.fixed, pair.moving, lava, progress=_lava_progress, **run_settings).ddf
                    if TORCH in fields:
                        extra["lava_torch_max_diff"] = float(np.abs(ddf - fields[TORCH]).max())
                seconds = time.perf_counter() - tick
                fields[method] = ddf
                metrics = measure_pair(pair.fixed, pair.moving, ddf, spacing=pair.spacing,
                                       fixed_labels=pair.fixed_labels, moving_labels=pair.moving_labels,
                                       true_ddf=pair.ddf)
                records.append({"pair": pair.name, "index": pair.index, "method": method,
                                **{key: float(value) for key, value in metrics.values.items()},
                                "seconds": seconds, **extra})
            print(f"{pair.name} done ({count}/{len(pairs)}"
                  + (f" of shard {args.shard})" if args.shard else ")"), file=sys.stderr)

    table, row_notes = summarize(records, methods)
    print(table)
    for note in notes + row_notes:
        print(f"- {note}")
    model = args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
    settings = dict(recipe=recipe, model=str(model), iterations=iterations, patch_stride=stride, pyramid=pyramid,
                    smoothing=smoothing,
                    methods=methods, pairs=total, lava_pairs=lava_pairs, torch_pairs=torch_pairs)
    # The run's own notes only: --merge recomputes the row notes from all shards' rows.
    run = dict(settings=settings, notes=notes, shard=f"{shard}/{shard_count}", command=command,
               machine=machine_line(), date=f"{start_time:%Y-%m-%d %H:%M} UTC (start)",
               wall_seconds=round(time.perf_counter() - started, 1))
    if args.csv is not None:
        write_csv(args.csv, records, run)
        print(f"per-pair metrics: {args.csv}", file=sys.stderr)
    if args.write:
        write_section(args.section, section_text(settings, table, notes + row_notes, [run], None, args.section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
