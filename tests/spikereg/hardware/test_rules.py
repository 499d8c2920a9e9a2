"""One table of register rules: ``spikereg map`` lists exactly what export's precision check refuses.

Each bad file breaks one register of loihi2 (8-bit weights, 17-bit threshold,
12-bit decays) in one layer; map must list it as a problem and check_precision
must refuse it, both in the same words.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from lava_export.netx import check_precision
from spikereg.hardware import PROFILE_DIR, MappingError, load_profile, map_network
from spikereg.hardware.rules import exponent_problem, register_rules

CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 123, "vThMant": 64, "refDelay": 1, "gradedSpike": False}


def write_net(path: Path, weight: np.ndarray, **neuron) -> Path:
    """input (3,) -> dense (2,), as SLAYER's export_hdf5 writes it, with the given weights and neuron values."""
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        f.create_dataset("layer/0/type", (1,), "S10", [b"input"])
        f.create_dataset("layer/0/shape", data=np.array([3]))
        f.create_dataset("layer/1/type", (1,), "S10", [b"dense"])
        f.create_dataset("layer/1/shape", data=np.array([2]))
        f.create_dataset("layer/1/weight", data=weight.astype(np.float32))
        for key, value in {**CUBA, **neuron}.items():
            layer.create_dataset(f"1/neuron/{key}", data=value)
    return path


GOOD = np.array([[2.0, -256.0, 254.0], [0.0, 4.0, -2.0]])

BAD = {  # name -> (weight, neuron values, the message both must give)
    "vDecay 4096": (GOOD, {"vDecay": 4096},
                    "layer 1 (dense): neuron vDecay 4096 at (0,) does not fit loihi2's decay_bits 12: "
                    "must be an integer in [0, 4095]"),
    "iDecay 0": (GOOD, {"iDecay": 0},
                 "layer 1 (dense): neuron iDecay 0 at (0,) does not fit loihi2's decay_bits 12 "
                 "(netx writes du = iDecay - 1): must be an integer in [1, 4096]"),
    "vThMant 2**17": (GOOD, {"vThMant": 2**17},
                      "layer 1 (dense): neuron vThMant 131072 at (0,) does not fit loihi2's threshold_bits 17: "
                      "must be an integer in [0, 131071]"),
    "odd weight": (np.where(GOOD == 4.0, 3.0, GOOD), {},
                   "layer 1 (dense): weight 3 at (1, 1) does not fit loihi2's weight_bits 8 (+ sign): "
                   "weights must be even integers in [-256, 254]"),
    "weight 300": (np.where(GOOD == 254.0, 300.0, GOOD), {},
                   "layer 1 (dense): weight 300 at (0, 2) does not fit loihi2's weight_bits 8 (+ sign): "
                   "weights must be even integers in [-256, 254]"),
}


def test_a_good_file_passes_both(tmp_path: Path) -> None:
    path = write_net(tmp_path / "good.net", GOOD, vDecay=4095, iDecay=4096, vThMant=2**17 - 1)
    assert map_network(path, "loihi2").problems == []
    check_precision(path, "loihi2")  # no exception


@pytest.mark.parametrize("case", list(BAD))
def test_map_and_export_name_the_same_problem(cli, tmp_path: Path, case: str) -> None:
    weight, neuron, message = BAD[case]
    path = write_net(tmp_path / "bad.net", weight, **neuron)
    assert map_network(path, "loihi2").problems == [message]

    result = cli.invoke("map", path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["problems"] == [message]

    with pytest.raises(MappingError) as refused:
        check_precision(path, "loihi2", label="model.net")
    assert str(refused.value) == f"model.net: {message}"


def test_the_rules_follow_the_profile(tmp_path: Path) -> None:
    data = yaml.safe_load((PROFILE_DIR / "loihi2.yaml").read_text())
    data["name"] = "odd"
    data["weight_bits"]["value"], data["threshold_bits"]["value"], data["decay_bits"]["value"] = 4, 6, 3
    data["weight_exponent_min"]["value"], data["weight_exponent_max"]["value"] = 1, 3
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump(data))
    chip = load_profile(tmp_path / "odd.yaml")
    assert [(r.lo, r.hi, r.even) for r in register_rules(chip)] == [
        (-16, 14, True), (0, 63, False), (1, 8, False), (0, 7, False)]

    problem = exponent_problem(chip)
    assert problem == "SLAYER's weights carry exponent 0, outside odd's weight exponent range [1, 3]"
    path = write_net(tmp_path / "small.net", np.zeros((2, 3)), vThMant=1, iDecay=1, vDecay=0)
    assert map_network(path, chip).problems == [problem]
    with pytest.raises(MappingError, match=r"small\.net: SLAYER's weights carry exponent 0, outside odd's"):
        check_precision(path, chip)


EVERY_DTYPE = (np.float32, np.float64, np.int16, np.int64)
WEIGHT_CASES = [(values, bad, dtype) for values, bad, dtypes in [
    ([0, 2, -256, 254], None, EVERY_DTYPE),
    ([0, 2, 3, 4], 3, EVERY_DTYPE),  # odd
    ([0, 2, 256, 4], 256, EVERY_DTYPE),  # past 8 bits
    ([0, -258, 2, 4], -258, EVERY_DTYPE),
    ([0.0, 2.5, 4.0], 2.5, EVERY_DTYPE[:2]),  # not an integer: floating point only, as are NaN and inf
    ([0.0, np.nan, 4.0], "nan", EVERY_DTYPE[:2]),
    ([0.0, np.inf, 4.0], "inf", EVERY_DTYPE[:2]),
] for dtype in dtypes]


@pytest.mark.parametrize("values, bad, dtype", WEIGHT_CASES)
def test_weights_fit_or_the_first_bad_one_is_named_in_every_dtype(values, bad, dtype) -> None:
    """The weight rule's check in the array's own dtype (the common case, fast) and its full pass agree."""
    weights = register_rules(load_profile("loihi2"))[0]
    message = weights.problem("weight", np.asarray(values).astype(dtype).reshape(1, -1, 1, 1), "loihi2")
    if bad is None:
        assert message is None
    else:
        assert message is not None and message.startswith(f"weight {bad}"), message
