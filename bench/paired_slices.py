"""Statistics of paired slices (bench/broker_auditor.py): a run alternates slices of two
kinds, in pairs of one each; a figure compares the kinds pair by pair, and its 95 %
bootstrap interval resamples whole pairs (samples within a slice are not independent,
the pairs are)."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Slice:
    """One slice: counting on or off, its timed requests, acknowledgements and the
    broker's CPU seconds."""

    counting: bool
    started: float
    ended: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: int = 0
    cpu_s: float = 0.0
    report: Callable[..., None] | None = None
    """The delivery report that adds a request's latency to `latencies_ms`."""


def pairs_of(slices: Sequence[Slice]) -> list[tuple[Slice, Slice]]:
    """(on, off) for each pair of consecutive slices."""
    out = []
    for a, b in zip(slices[::2], slices[1::2], strict=True):
        out.append((a, b) if a.counting else (b, a))
    return out


def p99(values: np.ndarray) -> float:
    return float(np.quantile(values, 0.99))


def bootstrap(
    pairs: Sequence[tuple[Slice, Slice]],
    figure: Callable[[Sequence[tuple[Slice, Slice]]], float],
    resamples: int,
    rng: random.Random,
) -> tuple[float, float]:
    """A 95 % interval of `figure` over the pairs, resampled whole with replacement."""
    values = sorted(figure(rng.choices(pairs, k=len(pairs))) for _ in range(resamples))
    return values[int(resamples * 0.025)], values[int(resamples * 0.975) - 1]


def tail_difference(pairs: Sequence[tuple[Slice, Slice]], quantile: float) -> float:
    """The `quantile` of all counting samples minus that of all others."""
    on = np.concatenate([np.asarray(a.latencies_ms) for a, _ in pairs])
    off = np.concatenate([np.asarray(b.latencies_ms) for _, b in pairs])
    return float(np.quantile(on, quantile) - np.quantile(off, quantile))


def paired_differences(pairs: Sequence[tuple[Slice, Slice]], quantile: float) -> list[float]:
    """Per pair: the `quantile` of the counting slice minus that of the other."""
    return [
        float(np.quantile(a.latencies_ms, quantile) - np.quantile(b.latencies_ms, quantile))
        for a, b in pairs
    ]


def rate_ratios(pairs: Sequence[tuple[Slice, Slice]]) -> list[float]:
    return [
        (a.acknowledged / (a.ended - a.started)) / (b.acknowledged / (b.ended - b.started))
        for a, b in pairs
    ]


def pooled_ratio(pairs: Sequence[tuple[Slice, Slice]]) -> float:
    on = sum(a.acknowledged for a, _ in pairs) / sum(a.ended - a.started for a, _ in pairs)
    off = sum(b.acknowledged for _, b in pairs) / sum(b.ended - b.started for _, b in pairs)
    return on / off


def median_interval(
    values: Sequence[float], resamples: int, rng: random.Random
) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median of `values` (one per pair)."""
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(resamples * 0.025)], medians[int(resamples * 0.975) - 1]
