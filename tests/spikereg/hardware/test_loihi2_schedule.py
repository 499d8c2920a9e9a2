"""The streamed Loihi 2 schedule against cases worked by hand.

Two layers, window of 2 steps, times 1 ns per synop, 2 ns per neuron update,
4 ns per spike sent, 100 ns barrier:

    layer A: 2 cores, 100 neurons, synops per step [200, 0], spikes sent [10, 0]
    layer B: 1 core,   10 neurons, synops per step [20, 20], spikes sent [0, 1]

    step 0: A's core 100/2 x 2 + 200/2 x 1 + 10/2 x 4 = 220 ns, B's 10 x 2 + 20 = 40 ns -> 220 + 100 = 320 ns
    step 1: A's core 100 ns, B's 20 + 20 + 4 = 44 ns                                 -> 100 + 100 = 200 ns
    one window: 520 ns; one drain step (neuron updates only): max(100, 20) + 100 = 200 ns; 1 drain step

A copy needs 3 cores; a chip of 10 cores holds 3 copies.
"""
from __future__ import annotations

import pytest

from spikereg.hardware import load_profile
from spikereg.hardware.loihi2_schedule import (
    SCHEDULE_FIGURES,
    LayerLoad,
    OpTimes,
    ScheduleError,
    copies_per_chip,
    drain_seconds,
    has_schedule,
    plan,
    stream_steps,
    window_seconds,
)

NS = 1e-9
TIMES = OpTimes(synop_s=1 * NS, update_s=2 * NS, spike_s=4 * NS, sync_s=100 * NS)
LAYERS = [
    LayerLoad(name="A", cores=2, neurons=100, synops=[200, 0], spikes=[10, 0]),
    LayerLoad(name="B", cores=1, neurons=10, synops=[20, 20], spikes=[0, 1]),
]


def schedule(**changes):
    args = dict(window=2, patches_per_pass=[7, 3], cores_per_copy=3, cores_per_chip=10, times=TIMES)
    args.update(changes)
    return plan(LAYERS, **args)


def test_time_per_step_is_the_busiest_core_plus_the_barrier() -> None:
    assert window_seconds(LAYERS, 2, TIMES) == pytest.approx([320 * NS, 200 * NS])
    assert drain_seconds(LAYERS, TIMES) == pytest.approx(200 * NS)


def test_copies_share_the_patches_and_stream_them() -> None:
    s = schedule()
    assert (s.copies_per_chip, s.chips, s.copies, s.drain_steps) == (3, 1, 3, 1)
    assert s.compute_window_s == pytest.approx(520 * NS)
    # pass 1: 7 patches over 3 copies -> 3 rounds, one stream: 3 x 520 + 200 = 1760 ns, 3 x 2 + 1 = 7 steps
    # pass 2: 3 patches -> 1 round: 520 + 200 = 720 ns, 3 steps
    assert s.pass_seconds == pytest.approx([1760 * NS, 720 * NS])
    assert s.pass_steps == [7, 3]
    assert s.busy_seconds == pytest.approx(2480 * NS)
    assert s.steps == 10
    assert s.mean_step_us == pytest.approx(0.248)
    assert s.bottleneck == "compute"


def test_a_stream_restarts_every_stream_patches_and_drains_each_time() -> None:
    # 12 patches, 3 copies -> 4 rounds; streams of 2 -> 2 streams: 4 x 520 + 2 x 200 ns, 4 x 2 + 2 steps
    s = schedule(patches_per_pass=[12], stream=2)
    assert s.busy_seconds == pytest.approx((4 * 520 + 2 * 200) * NS)
    assert s.steps == 10
    assert stream_steps(4, 2, 1, stream=2) == 10
    assert stream_steps(0, 2, 1) == 0


def test_more_chips_more_copies() -> None:
    s = schedule(patches_per_pass=[12], chips=2)  # 6 copies -> 2 rounds
    assert s.copies == 6
    assert s.busy_seconds == pytest.approx((2 * 520 + 200) * NS)


def test_the_host_link_sets_the_pace_when_it_is_slower() -> None:
    # 3 copies x 100 bytes x 8 bits / 1 Gbit/s = 2400 ns per window, more than the 520 ns of compute
    s = schedule(input_bytes_per_patch=100.0, link_bit_s=1e9)
    assert s.link_window_s == pytest.approx(2400 * NS)
    assert s.bottleneck == "host link"
    assert s.busy_seconds == pytest.approx((3 * 2400 + 200 + 2400 + 200) * NS)
    assert s.input_bytes == 1000.0  # 10 patches x 100 bytes


def test_a_fixed_step_replaces_the_workload() -> None:
    s = schedule(step_seconds=1e-6)  # PilotNet's kind of row: every step (drains too) 1 us
    assert s.busy_seconds == pytest.approx((3 * 2 + 1 + 1 * 2 + 1) * 1e-6)
    assert "not derived from the workload" in s.notes[0]


def test_copies_per_chip_and_what_does_not_fit() -> None:
    assert copies_per_chip(32, 128) == 4  # sdnn-2mm as first shipped mapped to 32 cores
    assert copies_per_chip(33, 128) == 3
    assert copies_per_chip(129, 128) == 0
    with pytest.raises(ScheduleError, match="more than a chip's 10"):
        schedule(cores_per_copy=11)
    with pytest.raises(ScheduleError, match="window of 2 steps"):
        plan([LayerLoad("A", 1, 1, [1.0], [0.0])], window=2, patches_per_pass=[1], cores_per_copy=1,
             cores_per_chip=1, times=TIMES)


def test_the_shipped_loihi2_profile_has_the_schedule_figures_and_loihi1_not() -> None:
    loihi2 = load_profile("loihi2")
    assert has_schedule(loihi2) and not has_schedule(load_profile("loihi1"))
    for name in SCHEDULE_FIGURES:
        figure = getattr(loihi2, name)
        assert figure.kind == "estimated" and len(figure.source) > 40, name
    times = OpTimes.of(loihi2)
    assert (times.synop_s, times.update_s) == pytest.approx((3.5e-9, 8.4e-9))
