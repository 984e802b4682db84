"""Timed windows that notice when other processes steal the CPU.

This machine's cores are shared with whatever else runs on it. A 2-thread PyTorch or
XLA step whose threads wait for each other slows down many times (not just by the
stolen share) when another process occupies one core, so a single busy window can
move a median. Each window therefore also measures the CPU time that *other*
processes used during it — all CPUs' busy time from /proc/stat minus this process's
own CPU time — and a window in which they used more than `max_foreign` of the
machine is repeated. The result says how many windows were thrown away.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Callable

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_seconds() -> float | None:
    """CPU-seconds all CPUs spent not idle since boot (None where /proc/stat is absent)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK  # user..softirq, steal; not guest (in user)


def _own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def foreign_fraction(run: Callable[[], None]) -> tuple[float, float]:
    """Runs `run()`; returns (wall seconds, share of the machine other processes used)."""
    busy0, own0 = _machine_busy_seconds(), _own_seconds()
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    busy1, own1 = _machine_busy_seconds(), _own_seconds()
    if busy0 is None or busy1 is None:
        return wall, 0.0
    foreign = max(0.0, (busy1 - busy0) - (own1 - own0))
    return wall, foreign / (wall * (os.cpu_count() or 1))


def wait_for_quiet(timeout: float, max_foreign: float = 0.05, sample: float = 0.5) -> bool:
    """Waits (up to `timeout` seconds) until other processes use at most `max_foreign`
    of the machine over a `sample`-second interval; returns whether that happened."""
    deadline = time.perf_counter() + timeout
    while True:
        _, foreign = foreign_fraction(lambda: time.sleep(sample))
        if foreign <= max_foreign:
            return True
        if time.perf_counter() >= deadline:
            return False


def timed_windows(run_steps: Callable[[int], None], per_window: int, windows: int = 5,
                  max_foreign: float = 0.05, max_attempts: int | None = None,
                  max_seconds: float = 90.0, max_wait: float = 120.0) -> dict:
    """Times `windows` windows of `per_window` steps, each as `run_steps(per_window)`
    (which must block until its steps are done), repeating busy windows.

    A window counts when other processes used at most `max_foreign` of the machine
    during it. Before a window that follows a busy one, this waits for the machine to
    be quiet (at most `max_wait` seconds over the whole call). After `max_attempts`
    windows (default 4 x windows), or once at least `windows` windows took
    `max_seconds` of running in all, the least-disturbed windows are used instead and
    the result is marked noisy. Returns the median rate (steps/s) and the details.
    """
    max_attempts = max_attempts or 4 * windows
    kept, seen = [], []
    running = waited = 0.0
    for attempt in range(max_attempts):
        if attempt >= windows and running > max_seconds:
            break
        if seen and seen[-1][0] > max_foreign and waited < max_wait:
            t0 = time.perf_counter()
            wait_for_quiet(max_wait - waited, max_foreign)
            waited += time.perf_counter() - t0
        wall, foreign = foreign_fraction(lambda: run_steps(per_window))
        running += wall
        seen.append((foreign, per_window / wall))
        if foreign <= max_foreign:
            kept.append(per_window / wall)
            if len(kept) == windows:
                break
    noisy = len(kept) < windows
    if noisy:
        kept = [rate for _, rate in sorted(seen)[:windows]]
    return {"steps_per_sec": statistics.median(kept), "window_rates": kept,
            "windows_discarded": len(seen) - len(kept), "noisy": noisy,
            "foreign_max": max(f for f, _ in seen), "steps_per_window": per_window,
            "waited_s": waited}
