"""Hand-built netx files and toy profiles for the counts, energy and report tests, with every count worked by hand.

The network (written the way SLAYER's ``export_hdf5`` writes it, no Lava needed):

    layer 0  input   (1, 4, 4)                       16 values, no neurons on chip
    layer 1  conv    2 out x 1 in x 3 x 3, pad 1 ->  (2, 4, 4) = 32 neurons
    layer 2  flatten 32
    layer 3  dense   3 x 32                        ->  3 neurons

Conv synapses: along a 4-long axis with 3 taps and padding 1 the taps reach
3 + 4 + 3 = 10 inputs, so 10 x 10 = 100 per channel pair and 2 x 100 = 200 in all.
Output channel 0 has all 9 taps nonzero (100 synapses); channel 1 only its
centre tap (16), so 116 nonzero and 84 zero. Dense: 96 synapses, the first 8
input columns zero, so 72 nonzero.

Mean fan-out: input 200 / 16 = 12.5 (7.25 effective, 5.25 zero); conv neurons
96 / 32 = 3 (2.25 effective, 0.75 zero).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from spikereg.config import ModelConfig
from spikereg.hardware.loihi2_schedule import SCHEDULE_FIGURES

CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 123, "vThMant": 64, "refDelay": 1, "gradedSpike": False}

#: The ANN twin the hand-built file's metadata describes: 8^3 patch, 4 channels in,
#: one 3^3 conv to 4 channels with stride 2, then the 6-channel readout.
TWIN = ModelConfig(patch_size=8, encoding="intensity", channels=[4], strides=[2], kernel_size=3)


def _type(group: h5py.Group, name: str) -> None:
    group.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _neuron(group: h5py.Group) -> None:
    for key, value in CUBA.items():
        group.create_dataset(f"neuron/{key}", data=value)


def write_two_layer_net(path: Path, metadata: dict[str, Any] | None = None) -> Path:
    """The network of the module docstring; ``metadata`` becomes SpikeReg's root attribute."""
    conv = np.zeros((2, 1, 3, 3), np.float32)
    conv[0] = 2.0
    conv[1, 0, 1, 1] = 2.0
    dense = np.full((3, 32), 2.0, np.float32)
    dense[:, :8] = 0.0
    with h5py.File(path, "w") as f:
        if metadata is not None:
            f.attrs["spikereg"] = json.dumps(metadata)
        layers = f.create_group("layer")
        inp = layers.create_group("0")
        _type(inp, "input")
        inp.create_dataset("shape", data=np.array([1, 4, 4]))
        c = layers.create_group("1")
        _type(c, "conv")
        c.create_dataset("shape", data=np.array([2, 4, 4]))
        for key, value in {"inChannels": 1, "outChannels": 2, "groups": 1}.items():
            c.create_dataset(key, data=value)
        for key, value in {"kernelSize": [3, 3], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1]}.items():
            c.create_dataset(key, data=np.array(value))
        c.create_dataset("weight", data=conv)
        _neuron(c)
        flat = layers.create_group("2")
        _type(flat, "flatten")
        flat.create_dataset("shape", data=np.array([32, 1, 1]))
        d = layers.create_group("3")
        _type(d, "dense")
        d.create_dataset("shape", data=np.array([3]))
        d.create_dataset("weight", data=dense)
        _neuron(d)
    return path


@pytest.fixture
def two_layer_net(tmp_path: Path) -> Path:
    return write_two_layer_net(tmp_path / "two.net", {"model": asdict(TWIN)})


#: Round numbers so the joules can be worked by hand.
TOY_CHIP = {"energy_per_synop_pj": 10.0, "energy_per_neuron_update_pj": 2.0, "energy_per_spike_pj": 1.0,
            "static_power_mw": 100.0, "time_per_step_us": 10.0}
TOY_GPU = {"energy_per_mac_pj": 4.0, "energy_per_dram_word_pj": 100.0, "energy_per_mac_int8_pj": 0.5}


@pytest.fixture
def toy_chip(tmp_path: Path, profile_writer) -> Path:
    """Loihi 2 with round numbers and without the streamed schedule's figures: the sequential model only."""
    return profile_writer(tmp_path, "loihi2", "toychip", TOY_CHIP, drop=SCHEDULE_FIGURES)


#: Round per-operation times for the streamed schedule (ns, ns, ns, us, Gbit/s, pJ, bytes).
TOY_TIMES = {"time_per_synop_ns": 1.0, "time_per_neuron_update_ns": 2.0, "time_per_spike_ns": 4.0,
             "step_sync_us": 0.1, "host_link_gbit_s": 1.0, "energy_per_host_bit_pj": 5.0,
             "host_bytes_per_spike": 4}


@pytest.fixture
def timed_chip(tmp_path: Path, profile_writer) -> Path:
    """The toy chip with the streamed schedule's figures (TOY_TIMES)."""
    return profile_writer(tmp_path, "loihi2", "toychip", {**TOY_CHIP, **TOY_TIMES})


@pytest.fixture
def toy_gpu(tmp_path: Path, profile_writer) -> Path:
    return profile_writer(tmp_path, "gpu", "toygpu", TOY_GPU)


@pytest.fixture
def net_writer():
    """:func:`write_two_layer_net`, for tests that need their own metadata."""
    return write_two_layer_net


@pytest.fixture
def run_report():
    """Factory for a small, complete report.json dict (as ``spikereg run`` writes), with overrides."""

    def make(**changes) -> dict:
        report = {
            "backend": "sim",
            "precision": "fixed",
            "shape": [4, 4, 4],
            "spacing": [1.0, 1.0, 1.0],
            "iterations": 1,
            "patches_per_iteration": 3,
            "time_steps": 10,
            "input_spikes": 40,
            "layers": [
                {"layer": 1, "neurons": 32, "spikes": 20, "spike_rate": 20 / 320},
                {"layer": 2, "neurons": 3, "spikes": 7, "spike_rate": 7 / 30},
            ],
            "similarity": {"ncc_before": 0.5, "ncc_after": 0.6, "mse_before": 0.1, "mse_after": 0.05},
            "timing": {"total_seconds": 1.0, "network_seconds": 0.5, "compile_seconds": 0.1,
                       "host_seconds": 0.4},
        }
        report.update(changes)
        return report

    return make
