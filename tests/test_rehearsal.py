"""The README's main job: a rolling-deploy rehearsal of the Starlette example."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerodown._rehearsal import RehearsalPlan, rehearse_rolling


@pytest.mark.e2e
def test_a_short_rolling_rehearsal_loses_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    plan = RehearsalPlan("examples.starlette_app:app", rate=100, duration=12)
    report = rehearse_rolling(plan, tmp_path, lines.append)
    assert report.result.failed == [], report.render()
    assert len(report.result.records) >= 1000
    assert "instance 1 replaced and back in the proxy" in lines
    rendered = report.render()
    assert "0 failed" in rendered
    assert "latency during deploy: p50" in rendered
