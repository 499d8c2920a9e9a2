"""The shipped hardware profiles load, carry citations, and bad profiles fail clearly."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from spikereg.hardware import (
    KINDS,
    PROFILE_DIR,
    ConventionalProfile,
    NeuromorphicProfile,
    ProfileError,
    available_profiles,
    load_profile,
)

REPO = Path(__file__).resolve().parents[3]


def raw(name: str) -> dict[str, Any]:
    """The shipped profile ``name`` as a plain YAML mapping, to corrupt in a test."""
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())


def write(tmp_path: Path, data: Any, filename: str = "bad.yaml") -> Path:
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_error(tmp_path: Path, data: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert "\n" not in message, "profile errors are one line"
    assert str(path) in message, "profile errors name the file"
    return message


# -- the shipped profiles ------------------------------------------------------------


def test_profile_folder_is_the_repository_folder() -> None:
    assert PROFILE_DIR == REPO / "hardware_profiles"
    assert available_profiles() == ["cpu", "gpu", "jetson_orin_nano", "loihi1", "loihi2"]


@pytest.mark.parametrize(
    "name, cls",
    [
        ("loihi1", NeuromorphicProfile),
        ("loihi2", NeuromorphicProfile),
        ("gpu", ConventionalProfile),
        ("cpu", ConventionalProfile),
    ],
)
def test_shipped_profile_loads_with_cited_figures(name: str, cls: type) -> None:
    profile = load_profile(name)
    assert isinstance(profile, cls)
    assert profile.name == name
    figures = profile.figures()
    # every Figure field of the dataclass is present (figures() finds them all)
    # loihi2 also has the streamed schedule's 7 optional figures and max_synaptic_delay_steps
    assert len(figures) == {"loihi2": 28, "loihi1": 20}.get(name, 7)
    for key, figure in figures.items():
        assert figure.kind in KINDS, key
        assert len(figure.source) > 20, f"{name}.{key} needs a real citation"
        assert figure.unit, key


def test_loading_by_path_equals_loading_by_name() -> None:
    assert load_profile(str(PROFILE_DIR / "loihi2.yaml")) == load_profile("loihi2")
    assert load_profile(PROFILE_DIR / "loihi1.yaml") == load_profile("loihi1")


def test_loihi1_capacity_and_pre_silicon_energies() -> None:
    p = load_profile("loihi1")
    assert isinstance(p, NeuromorphicProfile)
    assert p.neurons_per_core.value == 1024
    assert p.cores_per_chip.value == 128
    assert p.synaptic_memory_bits_per_core.value == 128 * 1024 * 8  # 128 KiB
    assert p.max_fan_in.value == 4096
    assert p.graded_spike_payload_bits.value == 0
    # Davies et al. 2018, Table 2 -- simulated before silicon, and labelled so
    for key, pj in [
        ("energy_per_synop_pj", 23.6),
        ("energy_per_neuron_update_pj", 81),
        ("energy_per_idle_neuron_update_pj", 52),
        ("energy_per_spike_pj", 1.7),
        ("energy_per_tile_hop_pj", 3.5),
    ]:
        figure = getattr(p, key)
        assert figure.value == pj
        assert figure.kind == "pre-silicon"
        assert "Table 2" in figure.source


def test_loihi2_energies_follow_their_stated_derivation() -> None:
    """Each Loihi 2 per-event energy is Loihi 1's x 31/60 (die areas), as its source says."""
    l1, l2 = load_profile("loihi1"), load_profile("loihi2")
    for key in (
        "energy_per_synop_pj",
        "energy_per_neuron_update_pj",
        "energy_per_idle_neuron_update_pj",
        "energy_per_spike_pj",
        "energy_per_tile_hop_pj",
    ):
        f1, f2 = getattr(l1, key), getattr(l2, key)
        assert f2.kind == "estimated"
        assert "31/60" in f2.source
        assert f2.value == pytest.approx(f1.value * 31 / 60, abs=0.051), key


def test_loihi2_measured_figures_match_the_benchmark_arithmetic() -> None:
    p = load_profile("loihi2")
    # lava-dl pilotnet_snn/benchmark.ipynb: 408.91 frames/s at 16 steps per frame
    assert p.time_per_step_us.value == pytest.approx(1e6 / (408.91 * 16), abs=0.05)
    assert p.time_per_step_us.kind == "measured"
    assert p.static_power_mw.value == pytest.approx(232.078, abs=0.5)
    assert p.neurons_per_core.value * p.cores_per_chip.value == 2**20  # "1 million neurons"


def test_conventional_mac_energies_are_horowitz_sums() -> None:
    for name in ("gpu", "cpu"):
        p = load_profile(name)
        assert isinstance(p, ConventionalProfile)
        assert p.energy_per_mac_pj.value == pytest.approx(3.7 + 0.9)
        assert p.energy_per_mac_fp16_pj.value == pytest.approx(1.1 + 0.4)
        assert p.energy_per_mac_int8_pj.value == pytest.approx(0.2 + 0.03)
        assert p.energy_per_dram_word_pj.value == 640
        assert "Horowitz" in p.energy_per_mac_pj.source


# -- bad profiles ----------------------------------------------------------------------


def test_missing_field_is_named(tmp_path: Path) -> None:
    data = raw("loihi1")
    del data["max_fan_in"]
    assert "missing field 'max_fan_in'" in load_error(tmp_path, data)


def test_missing_figure_key_is_named(tmp_path: Path) -> None:
    data = raw("loihi2")
    del data["static_power_mw"]["source"]
    assert "missing field 'static_power_mw.source'" in load_error(tmp_path, data)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("many", "expected a positive integer, got str 'many'"),
        (-5, "expected a positive integer, got int -5"),
        (0, "expected a positive integer, got int 0"),
        (1024.5, "expected a positive integer, got float 1024.5"),
        (True, "expected a positive integer, got bool True"),
        (None, "expected a positive integer, got NoneType None"),
    ],
)
def test_mistyped_count_is_named_with_expected_type(tmp_path: Path, value: Any, expected: str) -> None:
    data = raw("loihi1")
    data["neurons_per_core"]["value"] = value
    message = load_error(tmp_path, data)
    assert "field 'neurons_per_core.value'" in message
    assert expected in message


def test_number_written_as_text_gets_a_hint(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) needs a signed exponent, so an unquoted 4.6e0 is read as text
    text = (PROFILE_DIR / "gpu.yaml").read_text().replace("value: 4.6\n", "value: 4.6e0\n")
    path = tmp_path / "gpu.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert "field 'energy_per_mac_pj.value': expected a non-negative number, got str '4.6e0'" in message
    assert "write a plain number" in message


def test_negative_energy_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi2")
    data["energy_per_synop_pj"]["value"] = -1.0
    assert "field 'energy_per_synop_pj.value': expected a non-negative number" in load_error(tmp_path, data)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi2")
    data["neurons_per_cor"] = copy.deepcopy(data["neurons_per_core"])  # a typo
    message = load_error(tmp_path, data)
    assert "unknown field 'neurons_per_cor'" in message
    assert "neurons_per_core" in message  # the allowed names are listed


def test_unknown_figure_key_is_rejected(tmp_path: Path) -> None:
    data = raw("cpu")
    data["energy_per_mac_pj"]["note"] = "hmm"
    assert "unknown field 'energy_per_mac_pj.note'" in load_error(tmp_path, data)


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi1")
    data["energy_per_synop_pj"]["kind"] = "guessed"
    message = load_error(tmp_path, data)
    assert "field 'energy_per_synop_pj.kind'" in message
    assert "pre-silicon" in message and "guessed" in message


def test_wrong_unit_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi1")
    data["energy_per_synop_pj"]["unit"] = "nJ"
    assert "field 'energy_per_synop_pj.unit': expected 'pJ', got str 'nJ'" in load_error(tmp_path, data)


def test_empty_source_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi1")
    data["cores_per_chip"]["source"] = "  "
    assert "field 'cores_per_chip.source'" in load_error(tmp_path, data)


def test_bad_choice_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi2")
    data["reset_interval_rule"]["value"] = "prime"
    message = load_error(tmp_path, data)
    assert "field 'reset_interval_rule.value'" in message and "'power_of_two'" in message


def test_exponent_range_must_be_ordered(tmp_path: Path) -> None:
    data = raw("loihi1")
    data["weight_exponent_min"]["value"] = 9
    assert "weight_exponent_min.value" in load_error(tmp_path, data)


def test_unknown_category_is_rejected(tmp_path: Path) -> None:
    data = raw("loihi1")
    data["category"] = "quantum"
    assert "field 'category'" in load_error(tmp_path, data)


def test_conventional_fields_in_a_neuromorphic_profile_are_rejected(tmp_path: Path) -> None:
    data = raw("loihi1")
    data["energy_per_mac_pj"] = raw("gpu")["energy_per_mac_pj"]
    assert "unknown field 'energy_per_mac_pj' for a neuromorphic profile" in load_error(tmp_path, data)


def test_not_a_mapping_and_not_yaml(tmp_path: Path) -> None:
    assert "must be a YAML mapping, got list" in load_error(tmp_path, [1, 2])
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(str(path))


def test_unknown_profile_name_lists_available() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("loihi3")
    message = str(info.value)
    assert "unknown hardware profile 'loihi3'" in message
    assert "available: cpu, gpu, jetson_orin_nano, loihi1, loihi2" in message


def test_missing_profile_path() -> None:
    with pytest.raises(ProfileError, match="hardware profile file not found"):
        load_profile("/nonexistent/dir/chip.yaml")


def test_modified_copy_of_a_shipped_profile_loads(tmp_path: Path) -> None:
    """The path route used by the mapping tests: a renamed, edited copy is a valid profile."""
    data = raw("loihi2")
    data["name"] = "tiny"
    data["neurons_per_core"]["value"] = 1
    profile = load_profile(str(write(tmp_path, data, "tiny.yaml")))
    assert isinstance(profile, NeuromorphicProfile)
    assert (profile.name, profile.neurons_per_core.value) == ("tiny", 1)
    assert math.isclose(profile.energy_per_synop_pj.value, 12.2)
