"""A graph file's run: ``spikereg run`` writes the energy section edge by edge, ``spikereg report`` renders it.

A tiny U-Net (8^3 patch, levels of 4 and 6 channels, saturated nodes as pairs)
converted from its twin into the proven range, exported as a graph file and
run on the torch backend on a 16^3 pair at 8 mm (a blob and the blob shifted).
"""
from __future__ import annotations

import json
from dataclasses import asdict

import nibabel as nib
import numpy as np
import pytest
import torch

from spikereg.config import load_config
from spikereg.hardware.graph_mapping import map_graph

TINY = ["model.architecture=unet", "model.patch_size=8", "model.channels=[4, 6]", "model.strides=[]",
        "model.spike_code=delta", "model.neuron.type=sdnn", "model.neuron.threshold=0.015625",
        "model.spike_exp=0", "model.max_displacement=4.0", "run.patch_stride=8", "run.iterations=1",
        "data.spacing=8.0"]


@pytest.fixture(scope="module")
def graph_run(cli, tmp_path_factory):
    """(model path, run folder) of a tiny U-Net's registration."""
    from lava_export.graph_file import export_graph
    from spikereg.networks.graph_convert import convert_twin
    from spikereg.networks.graph_twin import GraphTwin

    config = load_config(None, TINY)
    torch.manual_seed(0)
    fixed = torch.rand(8, 1, 8, 8, 8)
    net = convert_twin(GraphTwin(config.model), fixed, (fixed + 0.2 * torch.rand_like(fixed)).clamp(0, 1)).net
    folder = tmp_path_factory.mktemp("graph_run")
    model = folder / "unet.net"
    export_graph(net, model, extra={"spacing_mm": config.data.spacing, "run": asdict(config.run)})
    grid = np.stack(np.meshgrid(*[np.arange(16.0)] * 3, indexing="ij"))
    images = {}
    for name, centre in (("fixed", 7.5), ("moving", 8.5)):  # a bright blob, shifted by one voxel
        images[name] = folder / f"{name}.nii.gz"
        blob = np.exp(-((grid - centre) ** 2).sum(axis=0) / 20.0).astype(np.float32)
        nib.save(nib.Nifti1Image(blob, np.diag([8.0, 8.0, 8.0, 1.0])), images[name])
    out = folder / "run"
    result = cli.invoke("run", "--backend", "torch", "--model", model, "--fixed", images["fixed"], "--moving",
                        images["moving"], "--out", out, "--affine", "none", "--keep-failed")
    assert (out / "report.json").is_file(), result.output  # an untrained network may fail the verdict
    return model, out


def test_report_json_of_a_graph_run_costs_every_edge(graph_run):
    model, out = graph_run
    report = json.loads((out / "report.json").read_text())
    energy = report["energy"]
    mapping = map_graph(model, "loihi2")
    edges = energy["counts"]["edges"]
    assert [e["name"] for e in edges] == [e.name for e in mapping.edges] and len(edges) == 8
    spikes = [row["spikes"] for row in report["layers"]]
    for row, edge in zip(edges, mapping.edges):  # the run's messages of the source x the mapping's mean fan-out
        assert row["events"] == spikes[edge.source]
        assert row["synops_effective"] == pytest.approx(
            spikes[edge.source] * edge.nonzero_synapses / edge.source_neurons, rel=1e-12)
        assert row["synaptic_memory_bits"] == edge.synaptic_memory_bits  # the same memory spikereg map shows
    assert energy["synapse_accounting"]["name"] == "nonzero" and energy["counts"]["synops_structural_zeros"] == 0
    assert energy["delays"]["longest"] == 3
    rows = energy["neuromorphic"]
    assert set(rows) == {"loihi2", "loihi2_pilotnet_step", "loihi2_sequential", "loihi1"}
    schedule = rows["loihi2"]["schedule"]
    assert schedule["drain_steps"] == 0 and schedule["window"] == report["time_steps_per_patch"]
    assert schedule["cores_per_copy"] == mapping.cores
    assert all(row["total_j"] > 0 for row in {**rows, **energy["conventional"]}.values())
    assert energy["counts"]["ann_macs"] > 0 and energy["counts"]["ann_io_bytes"] == report["patches"] * 5 * 8**3 * 4


def test_spikereg_report_renders_a_graph_run(cli, graph_run):
    _, out = graph_run
    result = cli.invoke("report", out)
    assert result.exit_code == 0, result.output
    assert "nonzero only" in result.output
    markdown = (out / "report.md").read_text()
    assert "Edge by edge" in markdown and "dec2->dec1" in markdown and "convT" in markdown
    assert "| 2 enc1 |" in markdown  # the spike table names the nodes
    assert "Delays (up to 3 steps)" in markdown
    assert "dec2-&gt;dec1" in (out / "report.html").read_text()
