"""The mapping report counts a netx network exactly and refuses files netx could not load."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikereg.hardware import (
    MappingError,
    ProfileError,
    check_fits,
    load_profile,
    map_network,
)
from spikereg.hardware.synapses import conv_nonzero_fan_in, taps_in_bounds

# -- writing netx files the way SLAYER's export_hdf5 does ------------------------------

CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 123, "vThMant": 64, "refDelay": 1, "gradedSpike": False}


def _type(group: h5py.Group, name: str) -> None:
    group.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def input_layer(group: h5py.Group, shape: tuple[int, ...], neuron: Optional[dict[str, Any]] = None) -> None:
    _type(group, "input")
    group.create_dataset("shape", data=np.array(shape))
    for key, value in (neuron or {}).items():
        group.create_dataset(f"neuron/{key}", data=value)


def conv_layer(
    group: h5py.Group,
    weight: np.ndarray,
    out_shape: tuple[int, int, int],
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    neuron: Optional[dict[str, Any]] = None,
) -> None:
    _type(group, "conv")
    group.create_dataset("shape", data=np.array(out_shape))
    group.create_dataset("inChannels", data=weight.shape[1] * groups)
    group.create_dataset("outChannels", data=weight.shape[0])
    group.create_dataset("kernelSize", data=np.array(weight.shape[2:]))
    group.create_dataset("stride", data=np.array([stride, stride]))
    group.create_dataset("padding", data=np.array([padding, padding]))
    group.create_dataset("dilation", data=np.array([dilation, dilation]))
    group.create_dataset("groups", data=groups)
    group.create_dataset("weight", data=weight.astype(np.float32))
    for key, value in (neuron or CUBA).items():
        group.create_dataset(f"neuron/{key}", data=value)


def flatten_layer(group: h5py.Group, n: int) -> None:
    _type(group, "flatten")
    group.create_dataset("shape", data=np.array([n, 1, 1]))


def dense_layer(group: h5py.Group, weight: np.ndarray, neuron: Optional[dict[str, Any]] = None) -> None:
    _type(group, "dense")
    group.create_dataset("shape", data=np.array([weight.shape[0]]))
    group.create_dataset("inFeatures", data=weight.shape[1])
    group.create_dataset("outFeatures", data=weight.shape[0])
    group.create_dataset("weight", data=weight.astype(np.float32))
    for key, value in (neuron or CUBA).items():
        group.create_dataset(f"neuron/{key}", data=value)


def conv_weight() -> np.ndarray:
    """3 out x 2 in x 3 x 3, all 2 except output channel 0 (all zero) and tap (0, 0) of pair (1, 1)."""
    w = np.full((3, 2, 3, 3), 2.0)
    w[0] = 0.0
    w[1, 1, 0, 0] = 0.0
    return w


def dense_weight() -> np.ndarray:
    """5 x 192, zero wherever the flat index is a multiple of 4 (240 of 960 entries)."""
    return (np.arange(5 * 192).reshape(5, 192) % 4 * 2).astype(np.float64)


@pytest.fixture
def small_net(tmp_path: Path) -> Path:
    """input (2, 8, 8) -> conv 3x3, 3 channels, stride 1, padding 1 -> flatten -> dense 5."""
    path = tmp_path / "small.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (2, 8, 8))
        conv_layer(layer.create_group("1"), conv_weight(), (3, 8, 8), padding=1)
        flatten_layer(layer.create_group("2"), 3 * 8 * 8)
        dense_layer(layer.create_group("3"), dense_weight())
    return path




# -- counting ------------------------------------------------------------------------


def test_small_network_hand_counts(small_net: Path) -> None:
    report = map_network(small_net, load_profile("loihi2"))
    # Along each 8-long axis with a 3-tap kernel and padding 1, taps 0 and 2 each hit
    # the padding once: 7 + 8 + 7 = 22 in-bounds positions, so 22 * 22 = 484 per
    # (out, in) channel pair.
    conv_synapses = 3 * 2 * 484  # 2904 (the naive 192 neurons x 18 would be 3456)
    # zero output channel 0 removes 2 * 484; the zero corner tap of pair (1, 1) removes 7 * 7
    conv_nonzero = conv_synapses - 2 * 484 - 7 * 7  # 1887
    assert [lm.type for lm in report.layers] == ["input", "conv", "flatten", "dense"]
    assert [lm.neurons for lm in report.layers] == [0, 192, 0, 5]
    assert [lm.synapses for lm in report.layers] == [0, conv_synapses, 0, 960]
    assert [lm.nonzero_synapses for lm in report.layers] == [0, conv_nonzero, 0, 720]
    assert [lm.fan_in for lm in report.layers] == [0, 2 * 3 * 3, 0, 192]
    assert [lm.synaptic_memory_bits for lm in report.layers] == [0, conv_synapses * 8, 0, 960 * 8]
    assert [lm.cores for lm in report.layers] == [0, 1, 0, 1]
    assert [lm.shape for lm in report.layers] == [(2, 8, 8), (3, 8, 8), (192,), (5,)]
    assert (report.total_neurons, report.total_synapses, report.total_nonzero) == (197, 3864, 2607)
    assert report.total_synaptic_memory_bits == 3864 * 8
    assert (report.cores, report.chips, report.fits_one_chip) == (2, 1, True)
    assert report.problems == [] and report.notes == []
    check_fits(report)  # fits: no exception


def test_memory_limit_splits_a_layer_over_cores(profile_writer, small_net: Path, tmp_path: Path) -> None:
    # 1000 bits per core: the conv's 23232 bits need ceil(23.232) = 24 cores, the dense's 7680 need 8
    chip = load_profile(str(profile_writer(tmp_path, "loihi2", "smallmem", {"synaptic_memory_bits_per_core": 1000})))
    report = map_network(small_net, chip)
    assert [lm.cores for lm in report.layers] == [0, 24, 0, 8]
    # a dense neuron's 192 synapses x 8 bits = 1536 bits cannot be split across cores
    assert report.problems == [
        "layer 3 (dense): one neuron's 192 synapses need 1536 bits, more than smallmem's "
        "1000 bits of synaptic memory per core"
    ]


def test_tiny_cores_exceed_the_chip(profile_writer, small_net: Path, tmp_path: Path) -> None:
    chip = load_profile(str(profile_writer(tmp_path, "loihi2", "tiny", {"neurons_per_core": 1})))
    report = map_network(small_net, chip)
    assert report.cores == 192 + 5
    assert (report.chips, report.fits_one_chip) == (2, False)
    assert report.problems == ["network needs 197 cores, tiny has 128 per chip"]
    with pytest.raises(MappingError, match=r"does not fit tiny: network needs 197 cores, tiny has 128 per chip"):
        check_fits(report)


@pytest.mark.parametrize(
    "in_shape, out_ch, kernel, stride, padding, dilation, groups",
    [
        ((2, 8, 8), 3, 3, 1, 1, 1, 1),
        ((3, 9, 7), 4, 3, 2, 1, 1, 1),
        ((4, 10, 10), 4, 3, 2, 2, 2, 2),
        ((2, 5, 6), 2, 5, 1, 2, 1, 2),
        ((1, 6, 6), 2, 2, 3, 0, 1, 1),
    ],
)
def test_conv_counts_match_torch(
    tmp_path: Path, in_shape: tuple[int, int, int], out_ch: int, kernel: int,
    stride: int, padding: int, dilation: int, groups: int,
) -> None:
    """Synapse and nonzero counts equal what a torch convolution of ones actually sums."""
    rng = np.random.default_rng(sum(in_shape) + 7 * stride + padding)
    c_in = in_shape[0]
    weight = rng.integers(-3, 4, size=(out_ch, c_in // groups, kernel, kernel)) * 2  # many zeros
    x = torch.ones(1, *in_shape)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ones = F.conv2d(x, torch.ones(weight.shape), **kw)
    nonzero = F.conv2d(x, torch.tensor(weight != 0, dtype=torch.float32), **kw)
    out_shape = tuple(ones.shape[1:])
    path = tmp_path / "conv.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), in_shape)
        conv_layer(layer.create_group("1"), weight.astype(float), out_shape, **kw)
    conv = map_network(path, "loihi2").layers[1]
    assert conv.synapses == int(ones.sum())
    assert conv.nonzero_synapses == int(nonzero.sum())
    assert conv.neurons == int(np.prod(out_shape))
    assert conv.fan_in == (c_in // groups) * kernel * kernel
    # as a Sparse of its nonzero weights: the most nonzero synapses torch sums onto one output (every case has
    # an output that sees its whole kernel, where the count is reached)
    assert map_network(path, "loihi2", synapses="sparse").layers[1].fan_in == int(nonzero.max())


def test_taps_in_bounds_by_hand() -> None:
    # 4 inputs, 3-tap kernel, stride 1, padding 1: the outer taps miss one output each
    assert taps_in_bounds(4, 4, 3, 1, 1, 1).tolist() == [3, 4, 3]
    # stride 2, padding 1 over 8 inputs -> 4 outputs; tap 0 of output 0 reads index -1
    assert taps_in_bounds(8, 4, 3, 2, 1, 1).tolist() == [3, 4, 4]
    # no padding: every tap is in bounds
    assert taps_in_bounds(6, 4, 3, 1, 0, 1).tolist() == [4, 4, 4]


def test_conv_nonzero_fan_in_by_hand() -> None:
    assert conv_nonzero_fan_in(conv_weight()) == 18  # channel 0 all zero, channel 1 17, channel 2 18
    assert conv_nonzero_fan_in(np.zeros((2, 3, 3, 3))) == 0  # an all-zero weight
    assert conv_nonzero_fan_in(np.zeros((0, 3, 3, 3))) == 0  # no output channels


def test_fan_in_beyond_loihi1_is_named(tmp_path: Path) -> None:
    path = tmp_path / "wide.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (5000,))
        dense_layer(layer.create_group("1"), np.full((2, 5000), 2.0))
    report = map_network(path, "loihi1")
    assert report.problems == ["layer 1 (dense): fan-in 5000 exceeds loihi1 max_fan_in 4096"]
    with pytest.raises(MappingError, match=r"layer 1 \(dense\): fan-in 5000 exceeds loihi1 max_fan_in 4096"):
        check_fits(report)


def test_sparse_dense_layers_count_the_most_nonzero_weights_onto_one_neuron(tmp_path: Path) -> None:
    """A dense layer 3 x 5000 whose rows hold 4000, 4096 and 100 nonzero weights: 5000 synapses onto each
    neuron as Conv/Dense store them (over loihi1's 4096), at most 4096 as a Sparse of the nonzero ones."""
    weight = np.zeros((3, 5000))
    weight[0, :4000] = weight[1, 904:] = 2.0
    weight[2, ::50] = -2.0
    path = tmp_path / "wide.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (5000,))
        dense_layer(layer.create_group("1"), weight)
    dense, sparse = map_network(path, "loihi1"), map_network(path, "loihi1", synapses="sparse")
    assert [lm.nonzero_synapses for lm in sparse.layers] == [0, 4000 + 4096 + 100]
    assert [lm.fan_in for lm in dense.layers] == [0, 5000]
    assert [lm.fan_in for lm in sparse.layers] == [0, 4096]  # max_fan_in itself: allowed
    assert dense.problems == ["layer 1 (dense): fan-in 5000 exceeds loihi1 max_fan_in 4096"]
    assert sparse.problems == []


def test_dense_rec_fan_in_adds_the_recurrent_weights(tmp_path: Path) -> None:
    """Two neurons, three inputs: weight rows [2, 2, 0] and [2, 0, 0], recurrent rows [0, 0] and [2, 2].
    Dense: 3 inputs + 2 neurons = 5 onto each. Nonzero: neuron 0 holds 2 + 0, neuron 1 holds 1 + 2: 3."""
    path = tmp_path / "rec.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (3,))
        rec = layer.create_group("1")
        dense_layer(rec, np.array([[2.0, 2.0, 0.0], [2.0, 0.0, 0.0]]))
        del rec["type"]
        _type(rec, "dense_rec")
        rec.create_dataset("weight_rec", data=np.array([[0.0, 0.0], [2.0, 2.0]], np.float32))
    dense, sparse = map_network(path, "loihi2"), map_network(path, "loihi2", synapses="sparse")
    assert [(lm.synapses, lm.nonzero_synapses) for lm in dense.layers] == [(0, 0), (6 + 4, 3 + 2)]
    assert ([lm.fan_in for lm in dense.layers], [lm.fan_in for lm in sparse.layers]) == ([0, 5], [0, 3])


def test_graded_spikes_do_not_fit_loihi1(tmp_path: Path) -> None:
    path = tmp_path / "graded.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (4,))
        dense_layer(layer.create_group("1"), np.full((2, 4), 2.0), neuron={**CUBA, "gradedSpike": True})
    assert map_network(path, "loihi2").problems == []
    assert map_network(path, "loihi1").problems == [
        "layer 1 (dense): uses graded spikes, loihi1 has none (graded_spike_payload_bits 0)"
    ]


def test_input_layer_with_neurons_is_on_chip(tmp_path: Path) -> None:
    path = tmp_path / "in.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (2, 4, 4), neuron=CUBA)
        dense_layer(layer.create_group("1"), np.full((3, 32), 2.0))
    report = map_network(path, "loihi2")
    assert [lm.neurons for lm in report.layers] == [32, 3]
    assert [lm.cores for lm in report.layers] == [1, 1]


def test_registers_the_chip_cannot_hold_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "registers.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (3,))
        dense_layer(layer.create_group("1"), np.array([[300.0, 0.5, -2.0]]), neuron={**CUBA, "vThMant": 2**18 - 1})
    report = map_network(path, "loihi2")
    assert report.problems == [
        "layer 1 (dense): weight 300 at (0, 0) does not fit loihi2's weight_bits 8 (+ sign): "
        "weights must be even integers in [-256, 254]",
        "layer 1 (dense): neuron vThMant 262143 at (0,) does not fit loihi2's threshold_bits 17: "
        "must be an integer in [0, 131071]",
    ]
    with pytest.raises(MappingError, match=r"does not fit loihi2: layer 1 \(dense\): weight 300"):
        check_fits(report)


def test_report_serialises(small_net: Path) -> None:
    report = map_network(small_net, "loihi2")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["total_synapses"] == 3864
    assert data["layers"][1]["shape"] == [3, 8, 8]
    text = report.to_text()
    assert "onto loihi2" in text and "fits on one chip" in text
    assert len(text.splitlines()) == 3 + 4 + 3 + 1  # header lines, 4 layers, rule/total/verdict, problems


def test_command_line(profile_writer, small_net: Path, tmp_path: Path) -> None:
    """``spikereg map`` is the one command line of the mapping."""
    from typer.testing import CliRunner

    from spikereg.cli import app

    result = CliRunner().invoke(app, ["map", str(small_net), "--profile", "loihi1"])
    assert result.exit_code == 0 and "onto loihi1" in result.output
    tiny = profile_writer(tmp_path, "loihi2", "tiny", {"neurons_per_core": 1})
    result = CliRunner().invoke(app, ["map", str(small_net), "--profile", str(tiny), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["cores"] == 197


# -- files netx could not load ----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="network file not found"):
        map_network(tmp_path / "absent.net", "loihi2")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "junk.net"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MappingError, match=r"not an HDF5 file \(no HDF5 signature\)"):
        map_network(path, "loihi2")


def test_truncated_hdf5(small_net: Path, tmp_path: Path) -> None:
    data = small_net.read_bytes()
    path = tmp_path / "truncated.net"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MappingError, match=r"truncated\.net: cannot open HDF5 file \(truncated or corrupt\?\)"):
        map_network(path, "loihi2")


def test_corrupt_hdf5_never_leaks_an_h5py_error(small_net: Path, tmp_path: Path) -> None:
    """Random damage gives a MappingError or, when it only hits weight values, a report."""
    data = small_net.read_bytes()
    rng = np.random.default_rng(1)
    path = tmp_path / "corrupt.net"
    for _ in range(60):
        damaged = bytearray(data)
        start = int(rng.integers(8, len(data) - 64))
        damaged[start : start + 48] = rng.bytes(48)
        path.write_bytes(bytes(damaged))
        try:
            map_network(path, "loihi2")
        except MappingError:
            pass


def test_hdf5_without_layer_group(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(MappingError, match=r"not a netx network: no 'layer' group at the root \(found: data\)"):
        map_network(path, "loihi2")


@pytest.mark.parametrize("kind", ["pool", "convT", "unpool", "average", "concat"])
def test_layer_types_netx_cannot_load(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (2, 8, 8))
        group = layer.create_group("1")
        _type(group, kind)
        group.create_dataset("shape", data=np.array([2, 4, 4]))
    with pytest.raises(MappingError, match=rf"layer 1 has type '{kind}', which lava-dl netx cannot load"):
        map_network(path, "loihi2")


def test_unknown_layer_type(tmp_path: Path) -> None:
    path = tmp_path / "odd.net"
    with h5py.File(path, "w") as f:
        _type(f.create_group("layer/0"), "lstm")
    with pytest.raises(MappingError, match=r"layer 0 has unknown type 'lstm'; netx loads input, conv"):
        map_network(path, "loihi2")


def test_inconsistent_dense_input_is_named(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (2, 4, 4))
        flatten_layer(layer.create_group("1"), 32)
        dense_layer(layer.create_group("2"), np.ones((3, 30)))
    with pytest.raises(MappingError, match=r"layer 2 \(dense\): weight has 30 inputs, the previous layer outputs 32"):
        map_network(path, "loihi2")


def test_conv_without_input_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / "headless.net"
    with h5py.File(path, "w") as f:
        conv_layer(f.create_group("layer/0"), np.ones((2, 1, 3, 3)), (2, 4, 4))
    with pytest.raises(MappingError, match=r"layer 0 \(conv\): input shape unknown"):
        map_network(path, "loihi2")


def test_conv_shape_must_match_its_arithmetic(tmp_path: Path) -> None:
    path = tmp_path / "badshape.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (1, 8, 8))
        conv_layer(layer.create_group("1"), np.ones((2, 1, 3, 3)), (2, 8, 8))  # padding 0 gives 6x6
    with pytest.raises(MappingError, match=r"shape \[2, 8, 8\] does not match .* \(expected \[2, 6, 6\]\)"):
        map_network(path, "loihi2")


def test_missing_dataset_is_named(tmp_path: Path) -> None:
    path = tmp_path / "noweight.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        input_layer(layer.create_group("0"), (4,))
        group = layer.create_group("1")
        _type(group, "dense")
        group.create_dataset("shape", data=np.array([2]))
    with pytest.raises(MappingError, match=r"layer 1 \(dense\): missing dataset 'weight'"):
        map_network(path, "loihi2")


def test_conventional_profile_cannot_map(small_net: Path) -> None:
    with pytest.raises(ProfileError, match="'gpu' is conventional; mapping needs a neuromorphic profile"):
        map_network(small_net, "gpu")


# -- a real SLAYER export, read back by netx ------------------------------------------------


def test_slayer_export_is_counted_like_netx_builds_it(tmp_path: Path) -> None:
    """Export a small SLAYER network, map it, and check against what netx itself builds."""
    from spikereg import compat

    slayer = compat.slayer()
    torch.manual_seed(0)
    params = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03}
    blocks = torch.nn.ModuleList(
        [
            slayer.block.cuba.Input(params),
            slayer.block.cuba.Conv(params, 2, 3, 3, padding=1, stride=2, weight_scale=2, weight_norm=False),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(params, 3 * 4 * 4, 5, weight_scale=2, weight_norm=False),
        ]
    )
    x = (torch.rand(1, 2, 8, 8, 4) > 0.5).float()
    with torch.no_grad():
        for block in blocks:  # a forward pass sets each block's neuron shape
            x = block(x)
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(str(i)))

    report = map_network(path, "loihi2")
    assert [lm.type for lm in report.layers] == ["input", "conv", "flatten", "dense"]
    with h5py.File(path, "r") as f:
        conv_w = f["layer/1/weight"][()]
        dense_w = f["layer/3/weight"][()]
    x1 = torch.ones(1, 2, 8, 8)
    conv_kw = dict(stride=2, padding=1)
    assert report.layers[1].synapses == int(F.conv2d(x1, torch.ones(conv_w.shape), **conv_kw).sum())  # 726
    assert report.layers[1].nonzero_synapses == int(
        F.conv2d(x1, torch.tensor(conv_w != 0, dtype=torch.float32), **conv_kw).sum()
    )
    assert report.layers[3].synapses == 240
    assert report.layers[3].nonzero_synapses == int(np.count_nonzero(dense_w))

    # netx builds one block per on-chip layer; their neurons are what the report counts
    netx = compat.netx()
    net = netx.hdf5.Network(net_config=str(path))
    netx_neurons = [int(np.prod(block.shape)) for block in net.layers]
    assert netx_neurons == [lm.neurons for lm in report.layers if lm.neurons]
    assert sum(netx_neurons) == report.total_neurons == 128 + 48 + 5
