"""Which charts a funnel report shows: built from the report's own figures, goals and red-flag
thresholds, the same for `gtm report`'s page and the web inbox's."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from gtm.app.funnel import compute_funnel
from gtm.app.funnel_model import FunnelReport
from gtm.app.report_charts import report_charts
from tests.test_funnel import AS_OF, history


def _report() -> FunnelReport:
    return compute_funnel(history(), as_of=AS_OF, weeks=3)


def test_each_campaign_gets_the_charts_of_the_channels_it_used() -> None:
    charts = report_charts(_report())
    ids = [c.id for c in charts]
    assert len(ids) == len(set(ids))
    # alpha is LinkedIn only, beta email only, gamma only visited, delta has nothing at all
    assert {"funnel-linkedin-alpha", "trend-accept-alpha", "trend-response-alpha"} <= set(ids)
    assert not {"funnel-email-alpha", "trend-email-response-alpha"} & set(ids)
    assert {"funnel-email-beta", "trend-email-response-beta", "trend-meetings-beta"} <= set(ids)
    assert "funnel-linkedin-beta" not in ids
    assert "funnel-linkedin-delta" in ids and "trend-accept-delta" not in ids
    assert {f"rates-{d}" for d in ("genericness", "verdict", "tier", "prompt-version")} <= set(ids)
    for chart in charts:
        root = ET.fromstring(chart.svg)
        assert root.get("id") == chart.id, chart.id
        assert chart.title and chart.caption


def test_trends_carry_the_goal_the_red_band_and_the_counts() -> None:
    by_id = {c.id: c for c in report_charts(_report())}
    accept = by_id["trend-accept-alpha"].svg
    assert "trend-accept-alpha-goal-line" in accept  # playbook goal 30%
    assert "trend-accept-alpha-red-band" in accept  # red flag below 15%
    # week of 11-02: a1c, a2c, a3c, a4c old enough; a1, a2, a3 accepted by as_of
    assert "3/4" in accept
    delta = by_id["funnel-linkedin-delta"].svg
    assert "no data yet" in delta


def test_a_playbook_without_red_flags_draws_no_band() -> None:
    bare = dataclasses.replace(_report(), limits={})
    by_id = {c.id: c for c in report_charts(bare)}
    assert "trend-accept-alpha-red-band" not in by_id["trend-accept-alpha"].svg
    assert "trend-accept-alpha-goal-line" in by_id["trend-accept-alpha"].svg
