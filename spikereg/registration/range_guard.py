"""The run-time range check: no layer of the chip may reach the width its state is held in.

A file exported with ``--range proven`` (the default) or ``saturate`` is proven
in range for every input (:func:`spikereg.networks.bounds.worst_case_table`);
the guard then records the proof. Otherwise (``--range guarded``, files from
before the proof) it
watches every sigma-delta layer's per-step synaptic input and summed input
as the run goes -- the torch backend from SLAYER's own tensors, Lava from each
layer's graded spikes read back, convolved again on the host in float64 (what
the next layer received) -- and stops the run at the first value at the limit:
on Lava and Loihi 2 it would have wrapped, and the field would be wrong.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from spikereg.errors import SpikeRegError
from spikereg.networks.bounds import summed_input_limit, worst_case_table
from spikereg.networks.graph_bounds import graph_worst_case_table

if TYPE_CHECKING:  # annotations only
    from spikereg.networks.graph_model import GraphRegNet
    from spikereg.networks.snn import SpikingRegNet
    from spikereg.netx_file import NetxFile


class RangeOverflowError(SpikeRegError, RuntimeError):
    """A layer reached the chip's range during a run: the result would be wrong."""


@dataclass
class RangeEvent:
    layer: int  # 1-based conv/dense layer
    quantity: str
    value: float
    limit: float
    patch: int  # which patch of the registration (0-based), as near as the stream's steps tell


@dataclass
class RangeGuard:
    """What one backend's run did with the chip's ranges."""

    proven: bool
    worst_case: list[dict]
    limit: float | None  # SDNN: +-limit of the summed inputs (SLAYER's units); CUBA: None (proof only)
    stop: bool = True  # raise at the first event (else record it: --keep-failed)
    peaks: list[list[float]] = field(default_factory=list)  # per layer: largest |synaptic|, |summed| seen
    events: list[RangeEvent] = field(default_factory=list)

    @classmethod
    def for_network(cls, net, stop: bool = True) -> "RangeGuard":
        table = worst_case_table(net)
        graded = net.input_block is not None
        return cls(proven=all(row.ok for row in table), worst_case=[asdict(row) for row in table],
                   limit=summed_input_limit(net.config.spike_exp) if graded else None, stop=stop,
                   peaks=[[0.0, 0.0] for _ in net.blocks])

    @classmethod
    def for_graph(cls, net, stop: bool = True) -> "RangeGuard":
        """A graph file's guard: its every edge and node against the chip's range (a graph must be proven)."""
        table = graph_worst_case_table(net)
        return cls(proven=all(row.ok for row in table), worst_case=[asdict(row) for row in table],
                   limit=summed_input_limit(net.config.spike_exp), stop=stop, peaks=[[0.0, 0.0] for _ in net.blocks])

    def restart(self) -> None:
        """A new registration: forget the peaks and events seen (the bounds are the file's, and stay)."""
        self.peaks = [[0.0, 0.0] for _ in self.peaks]
        self.events = []

    def observe(self, series: list, window: int, first_patch: int, patches: int) -> None:
        """Per block, ``(synaptic, summed)`` largest-magnitude series ``(batch, steps)`` of one call.

        A streamed call (batch of one) runs patch ``k`` in steps ``[k*window, (k+1)*window)``
        plus the layer's delay; a batch from rest has one patch per row.
        """
        if self.limit is None:
            return
        for index, pair in enumerate(series):
            for slot, (quantity, values) in enumerate(zip(("synaptic input", "summed input"), pair)):
                if values is None or values.numel() == 0:
                    continue
                values = values.double().cpu()
                peak = float(values.max())
                self.peaks[index][slot] = max(self.peaks[index][slot], peak)
                if peak < self.limit:
                    continue
                row, step = divmod(int(torch.argmax(values)), values.shape[-1])
                patch = row if values.shape[0] > 1 else min(patches - 1, max(0, (step - index - 1) // window))
                event = RangeEvent(index + 1, quantity, peak, self.limit, first_patch + patch)
                self.events.append(event)
                if self.stop:
                    raise RangeOverflowError(
                        f"layer {event.layer}'s {quantity} reached {event.value:,.2f} on patch {event.patch} "
                        f"of this registration, at the +-{event.limit:g} the chip's 24-bit state holds: on "
                        "Lava and Loihi 2 it wraps and the field would be wrong, so nothing was written. "
                        "This model file is not proven in range (exported with --range guarded)")

    def section(self) -> dict:
        """``report.json``'s ``range`` entry."""
        return {
            "proven": self.proven,
            "limit": self.limit,
            "worst_case": self.worst_case,
            "observed_peaks": [{"layer": i + 1, "synaptic_input": p[0], "summed_input": p[1]}
                               for i, p in enumerate(self.peaks)] if self.limit is not None else None,
            "events": [asdict(event) for event in self.events],
        }


def lava_series(blocks, layer_values: list[np.ndarray]) -> list:
    """Lava's per-step synaptic and summed inputs, rebuilt from the graded spikes each layer sent.

    ``layer_values`` are one stream's values per read layer, from rest, in
    SLAYER's layout ``(C, H, W, steps)``, the input's first; block ``i``
    receives ``layer_values[i]``. Only steps with input are convolved (graded
    spikes are sparse in time); float64 sums are exact.
    """
    def per_step(values: torch.Tensor) -> torch.Tensor:  # (1, steps): the largest magnitude at each step
        return values.abs().reshape(-1, values.shape[-1]).amax(dim=0).unsqueeze(0)

    series = []
    for index, block in enumerate(blocks):
        spikes = torch.as_tensor(layer_values[index], dtype=torch.float64)
        steps = spikes.shape[-1]
        active = torch.nonzero(spikes.reshape(-1, steps).abs().sum(dim=0)).reshape(-1)
        if not len(active):  # nothing arrived: no synaptic input, and the sum stays at rest
            series.append([torch.zeros(1, steps, dtype=torch.float64), None])
            continue
        synapse = block.synapse
        weight = block.neuron.quantize_8bit(synapse.weight.detach()).double()
        out = torch.nn.functional.conv3d(spikes[..., active].unsqueeze(0), weight, None, synapse.stride,
                                         synapse.padding, synapse.dilation, synapse.groups)[0]
        full = torch.zeros(*out.shape[:-1], steps, dtype=torch.float64)
        full[..., active] = out
        series.append([per_step(full), per_step(torch.cumsum(full, dim=-1))])
    return series


def open_graph_guard(net: GraphRegNet, model: NetxFile, stop: bool = True) -> RangeGuard:
    """A graph file's range record; a graph not proven in range for every input is refused before any work."""
    guard = RangeGuard.for_graph(net, stop)
    if not guard.proven:
        worst = max((row for row in guard.worst_case if row["bound"] >= row["limit"]),
                    key=lambda r: r["bound"] / r["limit"])
        raise RangeOverflowError(f"model {model.path}: layer {worst['layer']}'s {worst['quantity']} can reach "
                                 f"{worst['bound']:,.1f}, past the +-{worst['limit']:,.0f} the chip holds: a graph "
                                 "file must be proven in range for every input (export it again)")
    return guard


def open_guard(net: SpikingRegNet, stop: bool = True) -> RangeGuard:
    """The run-time range check for ``net`` (a file's network); refuses a CUBA file not proven in range.

    CUBA layers' currents and voltages are not read back from the chip, so a
    CUBA file must be proven in range for every input to run at all.
    """
    guard = RangeGuard.for_network(net, stop)
    if net.input_block is None and not guard.proven:
        worst = max((row for row in guard.worst_case if row["bound"] >= row["limit"]), key=lambda r: r["bound"])
        raise RangeOverflowError(f"layer {worst['layer']}'s {worst['quantity']} can reach {worst['bound']:,.0f}, "
                                 f"past the +-{worst['limit']:,.0f} Lava holds: this CUBA model is not proven in "
                                 "range; export it again (spikereg export, --range proven)")
    return guard
