"""`spikereg report` checks every field it reads: one line naming the field (a JSON path) and what was expected."""
import copy
import json
from pathlib import Path

import pytest

from spikereg.registration.run_report import REPORT_FORMAT, write_report
from spikereg.report.summary import ReportError, read_report

ENERGY = {"per": "registration", "counts": {"synops": 10.0, "input_spikes": 4},
          "neuromorphic": {"chip": {"dynamic_j": 1e-6, "static_j": 2e-6, "total_j": 3e-6, "kind": "estimated",
                                    "snn_over_ann": {"gpu": {"total": 0.5, "dynamic": 0.1}},
                                    "terms": {"synops": {"joules": 1e-6, "figures": {"energy_per_synop_pj": {
                                        "value": 10.0, "unit": "pJ", "kind": "estimated", "source": "a paper"}}}}}},
          "conventional": {"gpu": {"dynamic_j": 6e-6, "static_j": None, "total_j": 6e-6, "kind": "estimated"}}}
PER_STEP = {"window": 2, "input_spikes": [3, 1], "spikes": [[1, 0], [0, 1]], "synops_effective": [[4, 2], [1, 1]],
            "synops_structural_zeros": [[0, 0], [1, 0]]}


def _set(report: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        report = report[int(key)] if isinstance(report, list) else report[key]
    if value is _set:
        del report[last]
    elif isinstance(report, list):
        report[int(last)] = value
    else:
        report[last] = value


DELETE = _set  # as a value: remove the field

CASES = [
    ("timing.host_seconds", "fast", "timing.host_seconds is a string ('fast'), expected a number"),
    ("timing.host_seconds", DELETE, "timing.host_seconds is missing (expected a number)"),
    ("timing", [1.0, 0.5], "timing is a list, expected an object"),
    ("timing.compile_seconds", None, "timing.compile_seconds is null, expected a number"),
    ("similarity.ncc_after", None, "similarity.ncc_after is null, expected a number"),
    ("iterations", 1.5, "iterations is a number (1.5), expected an integer"),
    ("time_steps", True, "time_steps is a boolean (True), expected an integer"),
    ("layers.1.spikes", "7", "layers[1].spikes is a string ('7'), expected an integer"),
    ("layers.0", 20, "layers[0] is a number (20), expected an object"),
    ("layers", {"1": 20}, "layers is an object, expected a list of objects"),
    ("jacobian", {"min": 0.5}, "jacobian.fraction_nonpositive is missing (expected a number)"),
    ("chip_profile", {"name": "loihi2", "measured": {"time_per_step_us": "slow"}},
     "chip_profile.measured.time_per_step_us is a string ('slow'), expected a number"),
    ("outputs", {"ddf": 3}, "outputs.ddf is a number (3), expected a string"),
    ("energy.neuromorphic.chip.snn_over_ann.gpu.dynamic", None,
     "energy.neuromorphic.chip.snn_over_ann.gpu.dynamic is null, expected a number (the total is given)"),
    ("energy.neuromorphic.chip.terms.synops.figures.energy_per_synop_pj.source", DELETE,
     "energy.neuromorphic.chip.terms.synops.figures.energy_per_synop_pj.source is missing (expected a string)"),
    ("energy.counts.synops", "many", "energy.counts.synops is a string ('many'), expected a number"),
    ("counts", {"per_step": dict(PER_STEP, input_spikes=[3, 1, 0])},
     "counts.per_step.input_spikes has 3 values, expected window = 2"),
    ("spikes_per_step", [[[1, 2], [3, 4]], [[1, 2]]],
     "spikes_per_step[1] has 1 layers, expected 2 as in the calls before it"),
]


@pytest.fixture
def complete(run_report) -> dict:
    """A report with every optional section `spikereg report` reads, valid as written."""
    return run_report(jacobian={"min": 0.7, "fraction_nonpositive": 0.0}, energy=copy.deepcopy(ENERGY),
                      counts={"per_step": copy.deepcopy(PER_STEP)}, spikes_per_step=[[[1, 2], [3, 4]]],
                      time_steps_per_patch=2, chip_profile={"name": "loihi2", "ran_on": "sim", "measured": None},
                      outputs={"ddf": "ddf.nii.gz", "warped": "warped.nii.gz"})


def test_a_complete_report_passes_and_renders(cli, complete, tmp_path):
    write_report(tmp_path, complete)
    result = cli.invoke("report", tmp_path, "--no-pages")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "NCC            0.5000 -> 0.6000" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("field, value, expected", CASES, ids=[case[0] for case in CASES])
def test_a_wrong_field_is_one_line_naming_it(cli, complete, tmp_path, field, value, expected):
    _set(complete, field, value)
    write_report(tmp_path, complete)
    result = cli.invoke("report", tmp_path)  # with pages: nothing of them may be written either
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'report.json'}: {expected}"], result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no report.md, .html, figures/


def test_the_checks_follow_what_is_read_not_what_is_written(complete, tmp_path):
    """Fields the report does not read may be anything; a report of an older SpikeReg without them passes."""
    complete["memory"] = "unchecked"
    complete["device"] = 7
    for optional in ("energy", "counts", "chip_profile", "spikes_per_step", "jacobian", "outputs"):
        del complete[optional]
    write_report(tmp_path, complete)
    assert read_report(tmp_path)["memory"] == "unchecked"


def test_the_top_level_must_be_a_report_object(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps([{"format": REPORT_FORMAT}]))
    with pytest.raises(ReportError, match=r"report.json: expected a JSON object"):
        read_report(tmp_path)
    assert Path(tmp_path / "report.json").is_file()
