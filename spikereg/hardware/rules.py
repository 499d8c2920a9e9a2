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


def _first_bad(values: np.ndarray, ok: np.ndarray) -> str:
    """``'300 at (2, 0, 1, 1)'``: the first offending element, for the error message."""
    index = tuple(int(i) for i in np.argwhere(~ok)[0])
    return f"{values[index]:g} at {index}"
