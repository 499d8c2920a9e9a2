"""Implausible inputs and options are refused with one line naming the file or option (issue 14).

Each case: exit code 1, one ``error:`` line saying what is wrong, no traceback,
and no output folder left behind.
"""
import re

import nibabel as nib
import numpy as np
import pytest

from spikereg.options import BOUNDS, OptionError, check_bound

CROP = np.s_[5:21, 6:22, 4:20]  # 16^3 of the 8 mm brain: one patch of the demo model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A real-anatomy pair, its labels, and the bad variants a new user meets, as NIfTI files."""
    from spikereg.data import load_mni, make_pair, tissue_labels

    template = load_mni("t1", 8.0)
    pair = make_pair(template.data, np.random.default_rng(3), max_displacement=2.0, control_spacing=4,
                     base_labels=tissue_labels(8.0).data)
    folder = tmp_path_factory.mktemp("inputs")
    mostly_blank = np.zeros((16, 16, 16), np.float32)
    mostly_blank[0, 0, :10] = 1.0  # 10 bright voxels of 4096: the 1st and 99th percentiles are both 0
    labels = pair.moving_labels[CROP].astype(np.float32)
    volumes = {
        "fixed": pair.fixed[CROP], "moving": pair.moving[CROP], "labels": labels,
        "zeros": np.zeros((16, 16, 16), np.float32), "constant": np.full((16, 16, 16), 5.0, np.float32),
        "mostly_blank": mostly_blank, "half_labels": labels + 0.5,  # 0.5 / 1.5 / 2.5
    }
    files = {}
    for name, data in volumes.items():
        files[name] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, template.affine), files[name])
    return files


def run_args(images, out, **replace):
    files = {"--fixed": images["fixed"], "--moving": images["moving"], **replace}
    args = ["run", "--model", "demo", "--backend", "torch", "--out", out]
    for option, value in files.items():
        args += [option, value]
    return args


def refused(cli, *args, after_progress: bool = False) -> str:
    """The one error line of a refused command: exit 1 through the CLI's own handling, one line, no traceback.

    ``after_progress``: a file found bad while a dataset or cohort is worked through comes after the
    progress bar's line; it is still the only error line and the last line.
    """
    result = cli.invoke(*args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert after_progress or len(lines) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("option, value, message", [
    ("--iterations", 0, "--iterations 0: must be at least 1"),  # was silently the model's default
    ("--iterations", -2, "--iterations -2: must be at least 1"),
    ("--patch-stride", 0, "--patch-stride 0: must be at least 1"),  # was silently the model's default
    ("--pyramid", 0, "--pyramid 0: must be at least 1"),
    ("--batch-size", 0, "--batch-size 0: must be at least 1"),
    ("--smoothing", -0.5, "--smoothing -0.5: must be >= 0"),
    ("--memory-budget", 0, "--memory-budget 0.0: must be greater than 0"),
    ("--workers", 0, "--workers 0: must be at least 1"),
])
def test_run_refuses_options_out_of_bounds(cli, images, tmp_path, option, value, message):
    out = tmp_path / "out"
    line = refused(cli, *run_args(images, out), option, value)
    assert message in line and BOUNDS[option].meaning in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("option, value, message", [
    ("--iterations", 0, "--iterations 0: must be at least 1"),
    ("--patch-stride", 0, "--patch-stride 0: must be at least 1"),
    ("--batch-size", -1, "--batch-size -1: must be at least 1"),
])
def test_evaluate_refuses_options_out_of_bounds(cli, tmp_path, option, value, message):
    out = tmp_path / "eval"
    line = refused(cli, "evaluate", "--data", tmp_path, "--split", "", "--model", "demo", "--out", out,
                   option, value)
    assert message in line
    assert not out.exists()


@pytest.mark.parametrize("option, value, message", [
    ("--pairs", 0, "--pairs 0: must be at least 1"),  # wrote an empty dataset
    ("--pairs", -3, "--pairs -3: must be at least 1"),
    ("--spacing", 0, "--spacing 0.0: must be greater than 0"),
    ("--control-spacing", 0, "--control-spacing 0: must be at least 1"),
    ("--noise-std", -0.1, "--noise-std -0.1: must be >= 0"),
])
def test_data_synth_refuses_options_out_of_bounds(cli, tmp_path, option, value, message):
    out = tmp_path / "data"
    assert message in refused(cli, "data", "synth", "--out", out, option, value)
    assert not out.exists()


def test_zero_iterations_is_refused_by_the_library_too():
    from spikereg.registration.pipeline import run_options

    meta = {"model": {"patch_size": 16}, "reduction": 4, "run": {"iterations": 8, "patch_stride": 12}}
    with pytest.raises(OptionError, match=r"^--iterations 0: must be at least 1"):
        run_options(meta, 0, None)
    with pytest.raises(OptionError, match=r"^--patch-stride 0: must be at least 1"):
        run_options(meta, None, 0)
    assert run_options(meta, None, None)[:2] == (8, 12)  # None still means the model's


def test_every_bound_has_one_message_format():
    for option, bound in BOUNDS.items():
        assert option.startswith("--") and bound.meaning
        if bound.low is not None:
            below = bound.low if bound.low_open else bound.low - 1
            with pytest.raises(OptionError, match=rf"^{option} {below}: must be .* \({re.escape(bound.meaning)}\)$"):
                check_bound(option, below)
            assert check_bound(option, bound.low + 1) == bound.low + 1
        assert check_bound(option, None) is None
    with pytest.raises(OptionError, match="must be"):
        check_bound("--smoothing", float("nan"))


@pytest.mark.parametrize("role, image, message", [
    ("--moving", "zeros", "the image is constant (every voxel 0); nothing to register"),
    ("--fixed", "zeros", "the image is constant (every voxel 0); nothing to register"),
    ("--moving", "constant", "the image is constant (every voxel 5); nothing to register"),
    ("--moving", "mostly_blank", "blank once its intensities are normalised; nothing to register"),
])
def test_run_refuses_an_image_with_nothing_to_register(cli, images, tmp_path, role, image, message):
    out = tmp_path / "out"
    line = refused(cli, *run_args(images, out, **{role: images[image]}))
    assert line.startswith(f"error: {role} {images[image]}: ") and message in line
    assert not out.exists()


def test_run_refuses_labels_that_are_not_integers(cli, images, tmp_path):
    out = tmp_path / "out"
    line = refused(cli, *run_args(images, out, **{"--moving-labels": images["half_labels"]}))
    assert f"--moving-labels {images['half_labels']}: labels must be integers" in line and "e.g. 0.5" in line
    assert not out.exists()


def test_warp_refuses_labels_that_are_not_integers_and_warps_them_as_an_image(cli, images, tmp_path):
    result = cli.invoke(*run_args(images, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    ddf, out = tmp_path / "run" / "ddf.nii.gz", tmp_path / "w.nii.gz"
    line = refused(cli, "warp", "--image", images["half_labels"], "--ddf", ddf, "--out", out, "--labels")
    assert "labels must be integers" in line and "e.g. 0.5" in line
    assert not out.exists()
    ok = cli.invoke("warp", "--image", images["half_labels"], "--ddf", ddf, "--out", out)
    assert ok.exit_code == 0, ok.output


def test_evaluate_and_cohorts_refuse_a_constant_image(cli, images, tmp_path):
    import shutil

    data = tmp_path / "data"
    for sub, name in (("fixed_images", "fixed"), ("moving_images", "zeros")):
        (data / sub).mkdir(parents=True)
        shutil.copy(images[name], data / sub / "p.nii.gz")
    out = tmp_path / "eval"
    line = refused(cli, "evaluate", "--data", data, "--split", "", "--model", "demo", "--out", out,
                   after_progress=True)
    assert f"moving image {data / 'moving_images' / 'p.nii.gz'}: the image is constant" in line
    assert not out.exists() and not list(tmp_path.glob(".eval*"))

    csv = tmp_path / "pairs.csv"
    csv.write_text(f"fixed,moving\n{images['fixed']},{images['fixed']}\n{images['fixed']},{images['constant']}\n")
    cohort = tmp_path / "cohort"
    result = cli.invoke("run", "--model", "demo", "--backend", "torch", "--pairs", csv, "--out", cohort)
    assert result.exit_code == 1 and "1 of 2 pairs failed" in result.output
    # the cohort keeps going: the refused pair is a failed row naming its line and why, the other is done
    rows = (cohort / "cohort.csv").read_text()
    assert "failed" in rows and f"moving image {images['constant']}: the image is constant (every voxel 5)" in rows
    assert not list(tmp_path.glob(".cohort*"))


def test_labels_within_rounding_of_integers_are_kept_as_integers(tmp_path):
    from spikereg.data import load_source

    path = tmp_path / "l.nii.gz"
    labels = np.array([0, 1, 2, 3], np.float32).reshape(1, 1, 4) + np.float32(-2e-7)
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    volume = load_source(path, "labels", labels=True)
    np.testing.assert_array_equal(volume.data.ravel(), [0, 1, 2, 3])
