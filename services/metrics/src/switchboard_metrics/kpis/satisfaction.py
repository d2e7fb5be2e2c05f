"""Satisfaction KPIs from survey answers, as pure formulas (docs/metrics.md):

- CSAT: the share of CSAT answers scoring 4 or 5, in percent;
- NPS: the share of promoters (9-10) minus the share of detractors (0-6), from -100 to 100;
- CES: the mean effort score (1-7, 7 is easiest).

Each is None without answers of its kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Counts = Mapping[tuple[str, int], int]  # (kind, score) -> answers


@dataclass(frozen=True, slots=True)
class Satisfaction:
    csat_responses: int
    csat_percent: float | None
    nps_responses: int
    nps: float | None
    ces_responses: int
    ces_mean: float | None


def _of(counts: Counts, kind: str) -> dict[int, int]:
    return {score: n for (k, score), n in counts.items() if k == kind and n}


def summarize(counts: Counts) -> Satisfaction:
    csat, nps, ces = _of(counts, "csat"), _of(counts, "nps"), _of(counts, "ces")
    csat_n, nps_n, ces_n = sum(csat.values()), sum(nps.values()), sum(ces.values())
    promoters = sum(n for s, n in nps.items() if s >= 9)
    detractors = sum(n for s, n in nps.items() if s <= 6)
    return Satisfaction(
        csat_responses=csat_n,
        csat_percent=100 * sum(n for s, n in csat.items() if s >= 4) / csat_n if csat_n else None,
        nps_responses=nps_n,
        nps=100 * (promoters - detractors) / nps_n if nps_n else None,
        ces_responses=ces_n,
        ces_mean=sum(s * n for s, n in ces.items()) / ces_n if ces_n else None,
    )
