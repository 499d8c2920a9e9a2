"""Return a Lava process graph to rest between patches, so that every patch runs as if on a fresh network.

Sigma-delta neurons never forget (netx ignores ``reset_interval`` for them)
and their graded spikes drop the bits below ``state_exp`` for good, so a
long stream drifts. Run each patch from rest instead: hold its levels for a
window of ``W`` steps, then put every stateful value of every process back
where it started.

Which values are state was read from lava-nc 0.10.0's process models
(:data:`STATE_VARS`, :data:`MODEL_BUFFERS`); a process class not listed is
refused rather than left half-reset. Two exact ways to reset them:

* :func:`reset_state_vars` -- Lava's own API: on a paused runtime,
  ``Var.set`` each state Var back to its ``init``. Lava sends a set value
  element by element through two channels (runtime -> runtime service ->
  model, one message per element): 13-15 us per element measured on 2
  cores, 0.7 s per patch for the tests' tiny U-Net (52k state elements),
  200 s for a 32^3 U-Net (13.4M) -- slower than rebuilding the network
  (1 s and 6-10 s: build, compile, stop).
* :func:`rest_every` -- the same reset done by the process models
  themselves: each stateful leaf process gets its own model subclassed
  (:func:`resting_model`) so that on the first step of every window it puts
  its state back to the values it started from, before it sends or receives
  anything. That is what pausing after the window and setting every state
  Var would leave (plus the buffers that are not Vars), at no cost per
  patch; Lava picks the subclass through the run config's
  ``exception_proc_model_map``, as netx's own ``LIFReset`` resets CUBA
  neurons every ``reset_interval`` steps from inside its model.
"""
from __future__ import annotations

import numpy as np

from spikereg import compat
from spikereg.errors import SpikeRegError

REST_WINDOW = "spikereg_rest_window"  # proc_params key: steps between returns to rest

# Process class name -> its Vars that a step writes and a later step reads (lava-nc 0.10.0 models).
STATE_VARS: dict[str, tuple[str, ...]] = {
    # sigma: running sum of the synaptic input; act: last activation, the reference of the next
    # delta; residue: the part of the last delta below threshold, added to the next; error: the
    # cum_error accumulator (written only with cum_error). vth, bias, *_exp are parameters.
    "SigmaDelta": ("sigma", "act", "residue", "error"),
    "Sigma": ("sigma",),
    "Delta": ("act", "residue", "error"),
    # the synaptic output computed in one step, sent in the next (one step of latency)
    "Conv": ("a_buf",),
    "Sparse": ("a_buff",),
    "Dense": ("a_buff",),
    "DelaySparse": ("a_buff",),  # (outputs, max_delay + 1): deliveries still pending
    "DelayDense": ("a_buff",),
    # the host's input layer: last level sent (act) and what it has not sent yet (residue)
    "DeltaEncoder": ("act", "residue"),
    # CUBA neurons: current and voltage (netx's reset_interval resets them in LIFReset's model)
    "LIF": ("u", "v"),
    "LIFReset": ("u", "v"),
    # host I/O: no Vars; their only state is the host channel, which the runner empties every step
    "Injector": (),
    "Extractor": (),
}

# Model class name -> state a model keeps outside its Vars (Var.set cannot reach it).
MODEL_BUFFERS: dict[str, tuple[str, ...]] = {
    # the step's encoded delta, sent at the start of the next step; zero after any step whose input
    # equals the one before (a held level), so a window of W >= 2 held steps leaves it at rest
    "PyDeltaEncoderModelDense": ("s_out_buf",),
}


class RestError(SpikeRegError, ValueError):
    """A process whose state this module does not know, or a window it cannot keep."""


def leaf_processes(anchor) -> list:
    """Every process connected to ``anchor`` that runs a model of its own (hierarchical ones opened up)."""
    graphs = compat.import_lava("lava.magma.compiler.compiler_graphs")
    found, leaves = graphs.find_processes(anchor), []
    while found:
        process = found.pop(0)
        members = list(process.procs)
        if members:
            found.extend(p for p in members if p not in found and p not in leaves)
        elif process not in leaves:
            leaves.append(process)
    return leaves


def state_var_names(process) -> tuple[str, ...]:
    """Names of ``process``'s state Vars (:data:`STATE_VARS`); a class not listed is refused."""
    name = type(process).__name__
    if name not in STATE_VARS:
        held = ", ".join(v.name for v in process.vars) or "none"
        raise RestError(f"{name}: which of its Vars are state is not known (Vars: {held}); read its "
                        "process model and add it to lava_export.rest.STATE_VARS")
    return STATE_VARS[name]


def rest_value(var) -> np.ndarray:
    """The value ``var`` starts from: its ``init`` over its whole shape."""
    return np.broadcast_to(np.asarray(var.init), var.shape)


def reset_state_vars(processes) -> int:
    """Set every state Var of ``processes`` back to its ``init`` (Lava's ``Var.set``; runtime paused).

    Returns the number of elements set. Buffers that are not Vars
    (:data:`MODEL_BUFFERS`) stay as they are: the delta encoder's is zero
    after two held steps. About 12 us per element (see the module docstring).
    """
    elements = 0
    for process in processes:
        for name in state_var_names(process):
            var = getattr(process, name)
            var.set(rest_value(var).copy())
            elements += int(np.prod(var.shape))
    return elements


class _ReturnsToRest:
    """Mixin for a Lava process model: back to the state it started from on the first step of every window.

    The rest values are copied on the model's first step, before it runs:
    the builder has set every Var to its ``init`` by then.
    """

    rest_names: tuple[str, ...] = ()

    def run_spk(self) -> None:
        window = self.proc_params.get(REST_WINDOW)
        if window:
            if self.time_step == 1:
                self._rest = {name: np.copy(getattr(self, name)) for name in self.rest_names}
            elif (self.time_step - 1) % window == 0:
                for name, value in self._rest.items():
                    setattr(self, name, value.copy())
        super().run_spk()


_resting_models: dict[tuple[type, tuple[str, ...]], type] = {}


def resting_model(base: type, var_names: tuple[str, ...]) -> type:
    """``base`` (a Lava process model) that returns its ``var_names`` and buffers to rest every window."""
    names = tuple(var_names) + MODEL_BUFFERS.get(base.__name__, ())
    key = (base, names)
    if key not in _resting_models:
        # the subclass inherits base's @implements/@requires/@tag and its LavaPyTypes (found with dir())
        _resting_models[key] = type(f"Resting{base.__name__}", (_ReturnsToRest, base),
                                    {"rest_names": names, "__module__": __name__})
    return _resting_models[key]


def rest_every(processes, window: int, run_cfg) -> int:
    """Make ``processes`` return to rest on the first step of every ``window`` steps (call before compiling).

    Each stateful process gets ``window`` in its ``proc_params`` and its
    class's model -- the one ``run_cfg`` would select -- replaced in
    ``run_cfg.exception_proc_model_map`` by :func:`resting_model` of it.
    Returns the number of processes made to rest.
    """
    if window < 1:
        raise RestError(f"window {window}: must be at least one step")
    stateful = [(process, names) for process in processes if (names := state_var_names(process))]  # all known?
    models = run_cfg.exception_proc_model_map
    for process, names in stateful:
        process.proc_params.overwrite(REST_WINDOW, int(window))
        kind = type(process)
        chosen = models.get(kind)
        if chosen is None or not issubclass(chosen, _ReturnsToRest):
            if chosen is None:
                chosen = run_cfg.select(process, compat.process_models(process))
            models[kind] = resting_model(chosen, names)
    return len(stateful)
