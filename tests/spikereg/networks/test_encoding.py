"""Input codes (rate, latency, graded/delta) and the readout's decoding, on known values."""
import json

import h5py
import pytest
import torch

from spikereg.networks.encoding import (
    GRADED_STEP,
    PatchCodec,
    graded_levels,
    hold_encode,
    latency_encode,
    rate_encode,
)
from spikereg.netx_file import METADATA_ATTR
from spikereg.pretrained import DEMO_MODEL

VALUES = torch.tensor([0.0, 0.04, 0.25, 0.5, 0.96, 1.0])  # floor(x*8) = 0, 0, 2, 4, 7, 8


def test_rate_code_sends_floor_x_t_spikes_then_silence():
    spikes = rate_encode(VALUES, 8, window=12)
    assert spikes.shape == (6, 12)
    assert spikes.sum(dim=-1).tolist() == [0, 0, 2, 4, 7, 8]
    assert spikes[..., 8:].sum() == 0


def test_rate_code_equals_the_cumulative_floor_formula_bit_for_bit():
    """rate_encode works step by step; it must give exactly floor(x (t+1)) - floor(x t) in float32."""
    values = torch.rand((3, 10, 4, 4, 4), generator=torch.Generator().manual_seed(0))
    values[0, 0, 0, 0, :] = torch.tensor([0.0, 1.0, 0.5, 1 / 3])
    steps = torch.arange(19, dtype=values.dtype)
    cumulative = torch.floor(values.unsqueeze(-1) * steps + 1e-6)
    expected = torch.nn.functional.pad(cumulative[..., 1:] - cumulative[..., :-1], (0, 32 - 18))
    assert torch.equal(rate_encode(values, 18, window=32), expected)


def test_latency_code_sends_one_spike_earlier_for_brighter_inputs():
    spikes = latency_encode(VALUES, 8, window=12)
    assert spikes.sum(dim=-1).tolist() == [0, 0, 1, 1, 1, 1]  # floor(x T) = 0 stays silent
    times = [int(s.nonzero()[0]) for s in spikes[2:]]
    assert times == [6, 4, 1, 0]  # step T - floor(x T)
    assert spikes[..., 8:].sum() == 0


def test_graded_levels_sit_on_slayers_8bit_input_grid():
    levels = graded_levels(torch.linspace(-0.5, 1.5, 101))
    assert torch.equal(levels, torch.round(levels / GRADED_STEP) * GRADED_STEP)
    assert levels.min() == 0 and levels.max() == 127 / 32  # SLAYER clamps its input grid at 254/64
    held = hold_encode(torch.tensor([0.5]), 5)
    assert held.tolist() == [[64 / 32] * 5]  # round(0.5 * 127) = 64 levels, held for the window


def test_decode_counts_for_cuba_and_values_for_sdnn():
    # readout (N, g*6, g, g, T) with g = 1: channels (+x, -x, +y, -y, +z, -z)
    readout = torch.zeros(1, 6, 1, 1, 8)
    readout[0, 0, 0, 0, :4] = 1  # 4 spikes on +x
    readout[0, 3, 0, 0, :2] = 1  # 2 spikes on -y
    cuba = PatchCodec(time_steps=8, layers=3, max_displacement=2.0)
    assert cuba.decode(readout).flatten().tolist() == [1.0, -0.5, 0.0]  # rates 4/8 and 2/8, times 2 voxels
    sdnn = PatchCodec(time_steps=8, layers=3, max_displacement=2.0, spike_code="delta")
    graded = torch.zeros(1, 6, 1, 1, 8)
    graded[0, 0, 0, 0, 0], graded[0, 0, 0, 0, 3] = 0.75, -0.25  # the +x value ends at 0.5
    assert sdnn.decode(graded).flatten().tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("code", ["rate", "latency", "delta"])
def test_codec_encodes_every_code_to_the_folded_span(code):
    codec = PatchCodec(time_steps=5, layers=2, max_displacement=1.0, spike_code=code)
    patch = torch.rand(2, 1, 4, 4, 4)
    encoded = codec.encode(patch, patch.flip(-1))
    assert encoded.shape == (2, 4 * 4, 4, 4, codec.span)  # 4 intensity channels x depth 4
    if code == "delta":
        assert torch.equal(encoded[..., 0], encoded[..., -1])  # held
    else:
        assert set(encoded.unique().tolist()) <= {0.0, 1.0} and encoded[..., 5:].sum() == 0


def test_codec_from_the_shipped_models_metadata_is_rate_coded():
    with h5py.File(DEMO_MODEL, "r") as handle:
        meta = json.loads(handle.attrs[METADATA_ATTR])
    assert "spike_code" not in meta["model"]  # written before the key existed
    codec = PatchCodec.from_metadata(meta)
    assert codec.spike_code == "rate" and not codec.graded and codec.layers == meta["layers"]
