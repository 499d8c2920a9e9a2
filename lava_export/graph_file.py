"""A netx-style HDF5 file that describes a *graph* of layers (skip connections, upsampling).

Format ``spikereg-graph/1`` (one HDF5 file)::

    /                       attr "spikereg": JSON metadata, "format": "spikereg-graph/1"
    /layer/<i>              i = 0 .. N-1, one netx layer group per node, in topological order,
                            exactly as SLAYER's block.export_hdf5 writes it:
                            0: the input layer (type "input"; SDNN: with its sigma-delta
                            neuron, as slayer.block.sigma_delta.Input writes it; CUBA: a shape);
                            i >= 1: type "conv", shape, neuron (SDNN: vThMant; CUBA: vThMant,
                            iDecay, vDecay), and the
                            weight/kernelSize/stride/padding/dilation/groups of the node's
                            *primary* edge (its first input)
    /graph                  attr "format" = "spikereg-graph/1"
    /graph/names            the node names, by layer index (bytes)
    /graph/edge/<k>         k = 0 .. E-1, one group per synapse:
        source, destination int: layer indices (source < destination)
        type                "conv" | "convT" (S10, as netx writes types)
        delay               int >= 0: steps beyond the one every connection takes; the
                            destination at step t gets the source's output of step t - 1 - delay
        primary             1: the synapse is the destination layer group's own (its weight
                            and geometry live there); 0: they are here:
        weight              int, SLAYER's 8-bit export (quantize_8bit(w, descale=True)) in
                            torch's layout: conv (out, in, k_h, k_w), convT (in, out, k_h, k_w)
        inChannels, outChannels, kernelSize, stride, padding, dilation, groups
                            as SLAYER writes them for a conv layer ((H, W) order)

A destination's synaptic input is the sum of what all its edges deliver
(Lava: several OutPorts into one InPort). Layer groups are untouched SLAYER
exports, so a file whose graph is a chain (every edge ``i-1 -> i``, primary,
delay 0) is also a sequential netx file that stock ``netx.hdf5.Network``
loads (netx reads ``/layer`` only). Sequential SpikeReg files
(:mod:`lava_export.netx`) are not changed by any of this.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from spikereg.networks.snn import bias_mantissa
from spikereg.netx_file import GRAPH_FORMAT, METADATA_ATTR, GraphEdge, GraphFileError, is_graph_file, read_edges


def _quantized(synapse) -> np.ndarray:
    """The synapse's weight as SLAYER's export writes it (8-bit integers, time axis dropped)."""
    weight = synapse.pre_hook_fx(synapse.weight, descale=True)
    return weight.reshape(synapse.weight.shape[:-1]).detach().cpu().numpy()


def write_geometry(group: h5py.Group, synapse) -> None:
    """A synapse's weight and geometry, in the names SLAYER's conv export uses."""
    group.create_dataset("weight", data=_quantized(synapse))
    group.create_dataset("inChannels", data=synapse.in_channels)
    group.create_dataset("outChannels", data=synapse.out_channels)
    group.create_dataset("kernelSize", data=np.array(synapse.kernel_size[:-1]))
    group.create_dataset("stride", data=np.array(synapse.stride[:-1]))
    group.create_dataset("padding", data=np.array(synapse.padding[:-1]))
    group.create_dataset("dilation", data=np.array(synapse.dilation[:-1]))
    group.create_dataset("groups", data=synapse.groups)


def export_graph(net, path: str | Path, extra: dict | None = None) -> None:
    """Write ``net`` (:class:`~spikereg.networks.unet.SpikingUNet`) as a graph netx file at ``path``."""
    size = net.config.patch_size
    with torch.no_grad():  # SLAYER blocks learn their neuron shapes from a forward pass
        net.node_outputs(torch.zeros(1, size * net.config.in_channels, size, size, 1))
    with h5py.File(path, "w") as handle:
        handle.attrs[METADATA_ATTR] = json.dumps(dict(net.metadata(), **(extra or {})))
        layers = handle.create_group("layer")
        first = 0
        if net.input_block is None:  # CUBA: the input layer is a shape, the host sends spikes
            group = layers.create_group("0")
            group.create_dataset("type", (1,), "S10", [b"input"])
            group.create_dataset("shape", data=np.array([size * net.config.in_channels, size, size]))
            first = 1
        for index, block in enumerate(net.chip_layers, start=first):
            group = layers.create_group(str(index))
            block.export_hdf5(group)
            if getattr(block.neuron, "bias_is_set", False):  # a saturated node's offsets, a mantissa like vThMant
                group.create_dataset("bias", data=bias_mantissa(block))
        graph = handle.create_group("graph")
        graph.attrs["format"] = GRAPH_FORMAT
        graph.create_dataset("names", data=np.array([n.name.encode("ascii") for n in net.nodes]))
        edges = graph.create_group("edge")
        for k, edge in enumerate(net.edges):
            group = edges.create_group(str(k))
            destination = net.index[edge.destination]
            group.create_dataset("source", data=net.index[edge.source])
            group.create_dataset("destination", data=destination)
            group.create_dataset("type", (1,), "S10", [edge.kind.encode("ascii")])
            group.create_dataset("delay", data=int(edge.delay))
            primary = net.nodes[destination].inputs[0] == k
            group.create_dataset("primary", data=int(primary))
            if not primary:
                write_geometry(group, net.edge_synapse(edge))


__all__ = ["GRAPH_FORMAT", "GraphEdge", "GraphFileError", "export_graph", "is_graph_file", "read_edges",
           "write_geometry"]
