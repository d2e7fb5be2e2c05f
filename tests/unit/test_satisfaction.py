"""The satisfaction formulas: CSAT share of 4-5, NPS promoters minus detractors, CES mean."""

from __future__ import annotations

import pytest

from switchboard_metrics.kpis.satisfaction import summarize


def test_no_answers_no_figures() -> None:
    s = summarize({})
    assert (s.csat_percent, s.nps, s.ces_mean) == (None, None, None)
    assert (s.csat_responses, s.nps_responses, s.ces_responses) == (0, 0, 0)


def test_csat_is_the_share_of_four_and_five() -> None:
    s = summarize({("csat", 5): 3, ("csat", 4): 1, ("csat", 3): 2, ("csat", 1): 2})
    assert s.csat_responses == 8
    assert s.csat_percent == pytest.approx(50.0)


def test_nps_is_promoters_minus_detractors() -> None:
    # 4 promoters (9, 10), 3 passives (7, 8), 3 detractors (0-6): (4 - 3) / 10.
    s = summarize({("nps", 10): 2, ("nps", 9): 2, ("nps", 8): 2, ("nps", 7): 1, ("nps", 6): 1, ("nps", 0): 2})
    assert s.nps_responses == 10
    assert s.nps == pytest.approx(10.0)
    assert summarize({("nps", 3): 5}).nps == pytest.approx(-100.0)


def test_ces_is_the_mean_score_and_kinds_do_not_mix() -> None:
    s = summarize({("ces", 7): 1, ("ces", 4): 2, ("csat", 1): 9})
    assert s.ces_mean == pytest.approx(5.0)
    assert s.csat_percent == pytest.approx(0.0)
    assert s.nps is None
