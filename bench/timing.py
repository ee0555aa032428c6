"""The one timing rule of the benchmarks: the median of repeated runs, after an untimed warm-up."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Median wall time of `fn()` over `repeats` runs; `warm_up` runs it once untimed first
    (tracing, compilation, first allocations)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
