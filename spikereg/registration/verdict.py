"""Is a registration's result plausible? A wrong field must never be written as a success.

Checked on every run, whatever the backend, after the field is computed and
before anything is written (:func:`failures`). Each rule names what a user
would check by eye:

* the warped image must not match the fixed one worse than the moving one did
  (NCC lower by more than :data:`MAX_NCC_DROP`);
* the field must not fold (more than :data:`MAX_FOLDING` of the voxels with a
  Jacobian determinant <= 0: a diffeomorphic-looking field has none);
* no displacement may pass what the model can produce: ``max_displacement``
  per pass, ``iterations`` passes per pyramid level, doubled per coarser level
  (:func:`reach`), with a factor :data:`REACH_MARGIN` for readouts above one;
* and it must be finite;
* no layer may have reached the chip's range (the run-time range check).
"""
from __future__ import annotations

import numpy as np

from spikereg.errors import SpikeRegError

MAX_NCC_DROP = 0.01
MAX_FOLDING = 0.01  # fraction of voxels
REACH_MARGIN = 2.0


class RegistrationFailedError(SpikeRegError, RuntimeError):
    """The registration ran but its result is implausible; the message says why."""


def reach(max_displacement: float, iterations: int, levels: int) -> float:
    """The largest displacement (voxels of the finest level) the model could be asked to produce."""
    return float(max_displacement) * iterations * (2 ** levels - 1) * REACH_MARGIN


def failures(ddf: np.ndarray, similarity: dict, fraction_nonpositive: float, limit: float,
             range_events: list | None = None) -> list[str]:
    """Why the result is implausible (empty: it is not); one short reason each."""
    reasons = []
    if not np.isfinite(ddf).all():
        reasons.append("the field has non-finite values")
    else:
        largest = float(np.abs(ddf).max()) if ddf.size else 0.0
        if largest > limit:
            reasons.append(f"a displacement of {largest:.1f} voxels, beyond the {limit:.1f} the model can produce")
    if similarity["ncc_after"] < similarity["ncc_before"] - MAX_NCC_DROP:
        reasons.append(f"NCC fell from {similarity['ncc_before']:.4f} to {similarity['ncc_after']:.4f}")
    if fraction_nonpositive > MAX_FOLDING:
        reasons.append(f"{100 * fraction_nonpositive:.1f} % of voxels fold (Jacobian <= 0; at most "
                       f"{100 * MAX_FOLDING:g} % is plausible)")
    for event in range_events or []:
        reasons.append(f"layer {event.layer}'s {event.quantity} reached {event.value:,.2f} on patch {event.patch} "
                       f"(the chip holds +-{event.limit:g})")
    return reasons
