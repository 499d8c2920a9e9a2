"""The chip's register rules: the one table both ``spikereg map`` and export's precision check read.

Every number comes from the hardware profile (:mod:`spikereg.hardware.profiles`);
the rules say what the registers hold exactly, as SLAYER writes the numbers and
netx hands them to Lava:

* **weights** (``weight``, ``weight/real``, ``weight/imag``, ``weight_rec``):
  SLAYER's ``quantize_8bit`` rounds to a step of 2 and clamps to ``[-256, 254]``,
  with the exponent implicit (``weight_exponent`` = 0 for CUBA blocks, and netx
  builds ``Conv`` with ``weight_exp`` 0). That is a ``weight_bits``-bit magnitude
  plus sign whose lowest bit is 0, because in mixed-sign mode the sign takes one
  of the ``weight_bits`` (``lava.utils.weightutils.truncate_weights`` drops the
  lowest bit). So every weight must be an even integer in
  ``[-2**weight_bits, 2**weight_bits - 2]`` -- exactly SLAYER's grid for 8 bits;
  conservative for single-sign layers -- and exponent 0 must lie in the
  profile's ``[weight_exponent_min, weight_exponent_max]``.
* **threshold**: ``vThMant`` becomes Lava's ``vth``, an unsigned
  ``threshold_bits``-bit integer: ``[0, 2**threshold_bits - 1]``. (SLAYER writes
  ``2**18 - 1`` for dense layers without dynamics; the chip cannot hold it.)
* **decays**: netx passes ``du = iDecay - 1`` and ``dv = vDecay`` to Lava's LIF,
  whose fixed-point model adds a fixed offset of 1 back to ``du``; both are
  unsigned ``decay_bits``-bit integers, so ``iDecay`` must lie in
  ``[1, 2**decay_bits]`` (a current that never decays cannot be expressed) and
  ``vDecay`` in ``[0, 2**decay_bits - 1]``.

:func:`layer_problems` applies the table to one netx ``layer/<i>`` group and
returns one message per dataset that breaks it (without the file or layer
name, which the caller adds); :func:`exponent_problem` is the network-wide rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from spikereg.hardware.netx_layers import MappingError
from spikereg.hardware.profiles import NeuromorphicProfile
from spikereg.netx_file import Group, is_dataset

#: Where a netx layer keeps its weights (complex dense layers: real and imag).
WEIGHT_DATASETS: tuple[str, ...] = ("weight", "weight/real", "weight/imag", "weight_rec")

#: The exponent SLAYER's weights carry (implicit; netx builds its blocks with ``weight_exp`` 0).
SLAYER_WEIGHT_EXPONENT = 0


@dataclass(frozen=True)
class RegisterRule:
    """One register: the datasets it holds, the integers it takes, and the profile field behind them."""

    datasets: tuple[str, ...]  # inside a layer group: "weight", "neuron/vThMant", ...
    lo: int
    hi: int
    even: bool  # weights: the lowest mantissa bit is 0, and the message keeps the array's own index
    limit: str  # the profile field that sets the range, as the message names it

    def problem(self, key: str, values: np.ndarray, chip_name: str) -> Optional[str]:
        """The message for the first element of ``values`` that breaks the rule, or None."""
        if self._all_fit(values):
            return None
        name = key if self.even else key.replace("/", " ")  # "neuron/vDecay" -> "neuron vDecay"
        expected = (f"weights must be even integers in [{self.lo}, {self.hi}]" if self.even
                    else f"must be an integer in [{self.lo}, {self.hi}]")
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):  # text or compound data: no register holds it
            return f"{name} holds {np.asarray(values).dtype}, not numbers, for {chip_name}'s {self.limit}: {expected}"
        if not self.even:
            values = values.reshape(-1)  # neuron parameters: a scalar or one per neuron
        finite = np.isfinite(values)  # NaN and inf are simply not integers
        clean = np.where(finite, values, 0.0)
        ok = finite & (clean == np.round(clean)) & (clean >= self.lo) & (clean <= self.hi)
        if self.even:
            ok &= np.mod(np.where(ok, clean, 0.0), 2) == 0
        if ok.all():
            return None
        return f"{name} {_first_bad(values, ok)} does not fit {chip_name}'s {self.limit}: {expected}"

    def _all_fit(self, values: np.ndarray) -> bool:
        """True when every element fits, checked in the array's own dtype: the common case, in about a tenth
        of the time of the float64 pass that finds the first bad element (a U-Net's folded weights: 3 s)."""
        values = np.asarray(values)
        if values.dtype.kind not in "iuf" or values.size == 0:
            return False  # the full check says what is wrong (or that nothing is)
        if not (self.lo <= values.min() and values.max() <= self.hi):  # NaN fails both comparisons
            return False
        step = 2 if self.even else 1
        if values.dtype.kind in "iu":
            return step == 1 or not np.any(values % step)
        return not np.any(np.fmod(values, step))  # exact in floating point; inf is out of range above


def register_rules(chip: NeuromorphicProfile) -> tuple[RegisterRule, ...]:
    """The table, in the order problems are reported: weights, then vThMant, iDecay, vDecay."""
    wb = int(chip.weight_bits.value)
    threshold_bits = int(chip.threshold_bits.value)
    decay_bits = int(chip.decay_bits.value)
    return (
        RegisterRule(WEIGHT_DATASETS, -(2**wb), 2**wb - 2, True, f"weight_bits {wb} (+ sign)"),
        RegisterRule(("neuron/vThMant",), 0, 2**threshold_bits - 1, False, f"threshold_bits {threshold_bits}"),
        RegisterRule(("neuron/iDecay",), 1, 2**decay_bits, False,
                     f"decay_bits {decay_bits} (netx writes du = iDecay - 1)"),
        RegisterRule(("neuron/vDecay",), 0, 2**decay_bits - 1, False, f"decay_bits {decay_bits}"),
    )


def exponent_problem(chip: NeuromorphicProfile) -> Optional[str]:
    """The message when SLAYER's implicit weight exponent is outside the chip's range, or None."""
    lo, hi = int(chip.weight_exponent_min.value), int(chip.weight_exponent_max.value)
    if lo <= SLAYER_WEIGHT_EXPONENT <= hi:
        return None
    return (f"SLAYER's weights carry exponent {SLAYER_WEIGHT_EXPONENT}, outside {chip.name}'s weight exponent "
            f"range [{lo}, {hi}]")


def layer_problems(layer: Group, chip: NeuromorphicProfile) -> list[str]:
    """One message per dataset of the netx layer group ``layer`` that a register cannot hold exactly."""
    problems = []
    for rule in register_rules(chip):
        for key in rule.datasets:
            if key not in layer or not is_dataset(layer[key]):
                continue
            message = rule.problem(key, layer[key][()], chip.name)
            if message is not None:
                problems.append(message)
    return problems


# -- what the chip stores and charges -----------------------------------------------------


@dataclass(frozen=True)
class SynapseAccounting:
    """Which synapses the chip stores (synaptic memory) and reads on each spike (synops)."""

    name: str  # "dense" | "nonzero": report.json's energy.synapse_accounting.name
    zero_weights: bool  # True: synapses on zero weights are stored and charged like any other
    rule: str  # why, as the report says it

    def stored(self, synapses: int, nonzero: int) -> int:
        """The synapses that take synaptic memory."""
        return synapses if self.zero_weights else nonzero

    def fan_in(self, dense: int, nonzero: int) -> int:
        """The fan-in the chip holds, checked against ``max_fan_in``: every synapse onto the neuron
        (``dense``) where zero weights are stored, its nonzero weights (``nonzero``) where they are not."""
        return dense if self.zero_weights else nonzero

    def to_dict(self) -> dict:
        return {"name": self.name, "zero_weights_charged": self.zero_weights, "rule": self.rule}


#: Sequential netx files: as netx builds them, Lava's Conv holds each layer's folded weight whole.
DENSE = SynapseAccounting(
    "dense", True,
    "sequential netx file: netx builds each conv layer as Lava's Conv process, which holds the depth-folded 2-D "
    "weight whole, zero depth blocks included, and reads every stored synapse on a spike; synops on zero weights "
    "are charged and reported apart (structural zeros); a neuron's fan-in counts its zero-weight synapses too")
#: Nonzero synapses only: a chain built with sparse synapses, and every graph file.
NONZERO = SynapseAccounting(
    "nonzero", False,
    "the synapses are built as Lava Sparse lists of the nonzero weights only (lava_export.graph_builder.LavaGraph("
    "synapses=\"sparse\"): a sequential netx file's conv layers, a graph file's edges; verified equal to SLAYER "
    "bit for bit), as Loihi 2 stores sparse synapses, so the zero depth blocks of depth folding and weights that "
    "quantize to zero take no synaptic memory and no synaptic operation; synops on zero weights are reported apart, "
    "not charged; the sparse format's index bits are not counted. For a graph file Lava's simulator builds conv "
    "edges as Conv by default, for speed and memory; a chip build would hold the sparse lists; a neuron's fan-in "
    "counts its nonzero synapses only")

#: How a netx file's synapses may be built on Lava (``lava_export.graph_builder.LavaGraph``): "conv", Lava's
#: Conv holding each folded weight whole (stock netx); "sparse", Lava's Sparse holding the nonzero synapses only.
SYNAPSE_BUILDS: tuple[str, ...] = ("conv", "sparse")

#: What each build means, in the words of the error that refuses any other.
SYNAPSE_BUILD_HELP = {
    "conv": "Lava's Conv, each folded weight whole, zero weights stored and charged",
    "sparse": "Lava's Sparse, nonzero synapses only",
}


def synapse_accounting(graph: bool, synapses: str = "conv") -> SynapseAccounting:
    """Which synapses the chip stores and charges, from how they are built.

    A sequential netx file (``graph`` False) built with ``"conv"`` synapses is
    :data:`DENSE`, with ``"sparse"`` synapses :data:`NONZERO`; a graph file is
    :data:`NONZERO` either way. Any other ``synapses`` raises :class:`MappingError`
    naming the option and the choices.
    """
    if synapses not in SYNAPSE_BUILDS:
        raise MappingError(f"synapses {synapses!r}: choose "
                           + " or ".join(f"{name} ({SYNAPSE_BUILD_HELP[name]})" for name in SYNAPSE_BUILDS))
    return NONZERO if graph or synapses == "sparse" else DENSE


#: How an edge's delay is charged (report.json says it in these words).
DELAY_RELAYS = (
    "delayed edges: Lava's simulator runs an edge's delay d as d identity Sparse relays (lava_export.graph_builder); "
    "Loihi 2 holds it as a synaptic delay (Lava's DelaySparse: bit_length(d) delay bits stored with each synapse, "
    "the weighted input waits d steps in the destination's dendritic accumulator), so relays are charged nothing: "
    "no neurons, no neuron updates, no messages, no synops; the delay bits are in the synaptic memory")


def delay_bits(delay: int) -> int:
    """Bits each synapse of an edge with ``delay`` extra steps stores for it (0 for none)."""
    return max(int(delay), 0).bit_length()


def delay_problem(delay: int, chip: NeuromorphicProfile) -> Optional[str]:
    """The message when a synaptic delay is longer than the chip's ``max_synaptic_delay_steps``, or None."""
    limit = chip.max_synaptic_delay_steps
    if limit is None or delay <= int(limit.value):
        return None
    return f"delay {delay} steps exceeds {chip.name}'s max_synaptic_delay_steps {int(limit.value)}"


def _first_bad(values: np.ndarray, ok: np.ndarray) -> str:
    """``'300 at (2, 0, 1, 1)'``: the first offending element, for the error message."""
    index = tuple(int(i) for i in np.argwhere(~ok)[0])
    return f"{values[index]:g} at {index}"
