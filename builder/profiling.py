"""Latency and throughput of a runner at several batch sizes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tritium.builder.data import synthetic_inputs
from tritium.builder.recipe import InputSpec, ProfileSettings, Recipe
from tritium.builder.runners import Runner


@dataclass(frozen=True)
class LatencyPoint:
    batch_size: int
    p50_ms: float
    p95_ms: float
    throughput: float  # samples per second
    iterations: int

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def default_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 1 up to max_batch_size, max_batch_size itself included."""
    if max_batch_size <= 1:
        return [1]
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    sizes.append(max_batch_size)
    return sizes


def profile_batch_sizes(recipe: Recipe) -> list[int]:
    """The batch sizes a build profiles and times the performance rule at."""
    if not recipe.batch_axis:  # one call always takes the model's one shape
        return [recipe.fixed_batch or 1]
    if recipe.profile.batch_sizes:
        return recipe.profile.batch_sizes
    return default_batch_sizes(max(recipe.triton.max_batch_size, 1))


def summarize(batch_size: int, seconds: Sequence[float]) -> LatencyPoint:
    times = np.asarray(seconds)
    return LatencyPoint(
        batch_size=batch_size,
        p50_ms=float(np.percentile(times, 50) * 1e3),
        p95_ms=float(np.percentile(times, 95) * 1e3),
        throughput=float(batch_size * len(times) / times.sum()),
        iterations=len(times),
    )


def measure(
    runner: Runner,
    specs: Sequence[InputSpec],
    batch_size: int,
    settings: ProfileSettings,
    on_iteration: Callable[[], None] | None = None,
) -> LatencyPoint:
    inputs = synthetic_inputs(specs, batch_size, settings.fixed_dims, np.random.default_rng(batch_size))
    for _ in range(settings.warmup):
        runner.run(inputs)
    seconds: list[float] = []
    deadline = time.perf_counter() + settings.max_seconds_per_point
    while len(seconds) < settings.iterations and (len(seconds) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        runner.run(inputs)
        seconds.append(time.perf_counter() - start)
        if on_iteration:
            on_iteration()
    return summarize(batch_size, seconds)


def profile(
    runner: Runner,
    specs: Sequence[InputSpec],
    batch_sizes: Sequence[int],
    settings: ProfileSettings,
    on_point: Callable[[LatencyPoint], None] | None = None,
) -> list[LatencyPoint]:
    points = []
    for batch_size in batch_sizes:
        point = measure(runner, specs, batch_size, settings)
        points.append(point)
        if on_point:
            on_point(point)
    return points
