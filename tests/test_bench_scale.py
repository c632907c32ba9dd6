"""bench.scale's pipeline part: per-stage figures that a pause of the job does not inflate."""

import argparse
import subprocess
import sys
import time

import pytest

from bench.scale import PAUSE_GAP_S, StageMeter, _reap, parse_shape


def test_a_late_tick_counts_as_paused_not_as_stage_time():
    meter = StageMeter()
    meter._last -= 0.5
    meter._tick()
    meter._last -= PAUSE_GAP_S + 10  # the whole job was stopped (kill -STOP) this long
    meter._tick()
    assert meter.paused >= PAUSE_GAP_S + 10
    assert 0.5 <= meter.active < 1.0
    assert len(meter.loads) == 2


def test_reap_gives_the_child_s_own_cpu_and_peak_memory():
    # a child that allocates about 200 MB and burns CPU: its rusage, not this process's
    proc = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 << 20); sum(range(3_000_000))"])
    t0 = time.perf_counter()
    usage = _reap(proc)
    assert proc.returncode == 0
    assert 0 < usage.ru_utime + usage.ru_stime <= time.perf_counter() - t0 + 1
    assert usage.ru_maxrss > 200 << 10  # KiB


def test_shape_is_named_or_five_sizes():
    assert parse_shape("starcoder2-3b").layers * parse_shape("starcoder2-3b").heads == 720
    s = parse_shape("2,24,2,192,384")
    assert (s.layers, s.heads, s.kv_heads, s.hidden, s.intermediate) == (2, 24, 2, 192, 384)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_shape("2,24")
