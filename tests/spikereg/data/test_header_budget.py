"""Sizes from headers: a file declaring a huge volume is refused by its header, before any voxel is read.

The files here are real, small NIfTI (and HDF5) files whose headers declare a
huge shape; their data is truncated (or never written), so reading them would
fail differently -- a MemoryError, or "voxel data cannot be read" -- and only a
check of the header gives the message asserted.
"""
import gzip

import h5py
import nibabel as nib
import numpy as np
import pytest

from spikereg.data import VolumeError, load_volume
from spikereg.data.io import DEFAULT_VOLUME_LIMIT_GB, check_declared_size
from spikereg.data.loaders import H5Key, load_source


def declaring(path, shape, dtype=np.int16, extra=()):
    """A NIfTI file of 4^3 voxels (plus ``extra`` trailing axes) whose header is rewritten to declare ``shape``."""
    small = nib.Nifti1Image(np.ones((4, 4, 4) + tuple(extra), dtype), np.diag([2.0, 2.0, 2.0, 1.0]))
    raw = path.with_name("small.nii")
    nib.save(small, raw)
    blob = bytearray(raw.read_bytes())
    header = nib.Nifti1Header.from_fileobj(raw.open("rb"))
    header.set_data_shape(shape)
    blob[:348] = header.binaryblock
    raw.unlink()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(blob)))
    else:
        path.write_bytes(bytes(blob))
    assert nib.load(path).shape == tuple(shape)  # nibabel itself believes the header
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from spikereg.data import load_mni, make_pair

    template = load_mni("t1", 8.0)
    made = make_pair(template.data, np.random.default_rng(3), max_displacement=2.0, control_spacing=4)
    folder = tmp_path_factory.mktemp("pair")
    crop = np.s_[5:21, 6:22, 4:20]
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(made, name)[crop], template.affine), folder / f"{name}.nii.gz")
    return folder / "fixed.nii.gz", folder / "moving.nii.gz"


def one_line(cli, *args) -> str:
    result = cli.invoke(*args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output and "MemoryError" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
@pytest.mark.parametrize("role", ["--moving", "--fixed"])
def test_run_refuses_a_header_declaring_2000_cubed_voxels(cli, pair, tmp_path, name, role):
    huge = declaring(tmp_path / name, (2000, 2000, 2000))
    files = {"--fixed": pair[0], "--moving": pair[1], role: huge}
    out = tmp_path / "out"
    line = one_line(cli, "run", "--model", "demo", "--backend", "torch", "--out", out,
                    *(x for option, path in files.items() for x in (option, path)))
    assert f"{role} {huge}: the header declares 2000x2000x2000 voxels of int16, about 48 GB to read" in line
    assert f"over {DEFAULT_VOLUME_LIMIT_GB:g} GB" in line and "resample" in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_memory_budget_is_checked_from_the_header_before_the_volumes_are_read(cli, pair, tmp_path):
    # 400^3 int16 is within the default ceiling, so only --memory-budget refuses it; the file is
    # truncated, so had it been read the error would be "voxel data cannot be read"
    fixed = declaring(tmp_path / "big_fixed.nii", (400, 400, 400))
    moving = declaring(tmp_path / "big_moving.nii", (400, 400, 400))
    line = one_line(cli, "run", "--model", "demo", "--backend", "torch", "--fixed", fixed, "--moving", moving,
                    "--out", tmp_path / "out", "--memory-budget", "2")
    assert "--memory-budget 2 GB: registering a 400x400x400 volume on --backend torch needs about" in line
    # and without a budget the same files get past the header check, to fail on their truncated data
    line = one_line(cli, "run", "--model", "demo", "--backend", "torch", "--fixed", fixed, "--moving", moving,
                    "--out", tmp_path / "out")
    assert "voxel data cannot be read" in line
    assert not (tmp_path / "out").exists()


def test_a_memory_budget_above_the_default_ceiling_lets_a_volume_through_the_header_check(tmp_path):
    big = declaring(tmp_path / "big.nii", (1100, 1000, 1000))  # 6.6 GB to read: over the 4 GB default
    with pytest.raises(VolumeError, match="the default limit; --memory-budget raises it"):
        load_volume(big, what="--fixed")
    with pytest.raises(VolumeError, match="voxel data cannot be read"):  # past the header, to the data
        load_volume(big, what="--fixed", limit_gb=8.0)
    with pytest.raises(VolumeError, match=r"over 1 GB \(--memory-budget\)"):
        load_volume(declaring(tmp_path / "mid.nii", (600, 600, 600)), what="--fixed", limit_gb=1.0)  # 1.3 GB


def test_labels_warp_image_and_ddf_are_checked_by_their_headers(cli, pair, tmp_path):
    huge_labels = declaring(tmp_path / "labels.nii.gz", (2000, 2000, 2000), np.uint8)
    line = one_line(cli, "run", "--model", "demo", "--backend", "torch", "--fixed", pair[0], "--moving", pair[1],
                    "--moving-labels", huge_labels, "--out", tmp_path / "out")
    assert f"--moving-labels {huge_labels}: the header declares 2000x2000x2000 voxels of uint8" in line
    onehot = declaring(tmp_path / "onehot.nii.gz", (1000, 1000, 1000, 3), np.uint8, extra=(3,))
    line = one_line(cli, "warp", "--image", onehot, "--ddf", tmp_path / "none.nii.gz", "--out",
                    tmp_path / "w.nii.gz", "--labels")
    assert "the header declares 1000x1000x1000x3 voxels of uint8" in line
    ddf = declaring(tmp_path / "ddf.nii.gz", (1000, 1000, 1000, 1, 3), np.float32, extra=(1, 3))
    line = one_line(cli, "warp", "--image", pair[1], "--ddf", ddf, "--out", tmp_path / "w.nii.gz")
    assert f"displacement field {ddf}: the header declares 1000x1000x1000 voxels of float32" in line
    assert not (tmp_path / "w.nii.gz").exists()


def test_an_hdf5_dataset_declaring_a_huge_shape_is_refused_before_it_is_read(tmp_path):
    file = tmp_path / "images.h5"
    with h5py.File(file, "w") as h5:  # declared, never written: reading it would allocate 32 GB of fill
        h5.create_dataset("a", shape=(2000, 2000, 2000), dtype="float32", chunks=(64, 64, 64))
    assert file.stat().st_size < 100_000
    with pytest.raises(VolumeError, match=r"images.h5\[a\]: the header declares 2000x2000x2000 voxels of float32"):
        load_source(H5Key(file, "a"), "image")


def test_declared_size_counts_stored_bytes_and_the_float32_copy():
    check_declared_size((100, 100, 100), np.int16, "f", "image", limit_gb=0.006)  # 6 MB: allowed
    with pytest.raises(VolumeError, match="about 0.012 GB to read, over 0.006 GB"):
        check_declared_size((100, 100, 100), np.float64, "f", "image", limit_gb=0.006)  # 12 MB
