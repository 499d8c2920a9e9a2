"""The spiking U-Net graph on Lava vs SLAYER, at a given patch size and depth (issue 17).

Builds an untrained :class:`~spikereg.networks.unet.SpikingUNet` (seed 0),
exports it as a graph netx file, streams ``--patches`` real-anatomy patch
pairs (MNI T1, 2 mm) through SLAYER and through the Lava graph
(:func:`lava_export.graph_verify.compare_graph`) and prints one JSON line:
exactness (largest |Lava - SLAYER| over every layer and step), SLAYER's time
for the stream, Lava's compile and streaming time, and the chip mapping
(:func:`spikereg.hardware.graph_mapping.map_graph`). Exits 1 if Lava differs.

    .venv/bin/python benchmarks/unet_graph.py --patch 16 --channels 8,8,8 [--neuron cuba]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--channels", default="4,4", help="widths per level, finest first")
    parser.add_argument("--neuron", choices=("sdnn", "cuba"), default="sdnn")
    parser.add_argument("--patches", type=int, default=2)
    parser.add_argument("--window", type=int, default=None, help="default: sdnn 8, cuba 16")
    args = parser.parse_args(argv)

    from lava_export.graph_file import export_graph
    from lava_export.graph_verify import compare_graph, template_frames
    from spikereg.hardware.graph_mapping import map_graph
    from spikereg.networks.graph_topology import UNetConfig
    from spikereg.networks.snn import stream_of
    from spikereg.networks.unet import SpikingUNet

    config = UNetConfig(patch_size=args.patch, channels=tuple(int(c) for c in args.channels.split(",")),
                        neuron=args.neuron)
    net = SpikingUNet(config)
    window = args.window or (8 if config.graded else 16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet.net"
        export_graph(net, path)
        frames = template_frames(net, args.patches, window, stress=False)
        tick = time.perf_counter()
        with torch.no_grad():
            net.node_outputs(stream_of(frames, net.path_lengths["out"] + 1).unsqueeze(0))
        slayer_seconds = time.perf_counter() - tick
        result = compare_graph(net, path, frames)
        mapping = map_graph(path, "loihi2")
    row = {
        "patch": args.patch, "channels": list(config.channels), "neuron": config.neuron, "patches": args.patches,
        "window": window, "steps": result.steps, "passed": result.passed, "max_abs_diff": max(result.max_error),
        "slayer_stream_s": round(slayer_seconds, 3), "lava_compile_s": round(result.lava_compile_seconds, 2),
        "lava_run_s": round(result.lava_run_seconds, 2),
        "lava_ms_per_step": round(1000 * result.lava_run_seconds / result.steps, 1),
        "loihi2_cores": mapping.cores, "synapses": mapping.total_synapses, "nonzero_synapses": mapping.total_nonzero,
    }
    print(json.dumps(row))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
