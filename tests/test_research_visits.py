from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agents.research import research
from agents.state import State
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.web.webhooks import read_visits
from tests.test_graph import ACME
from tests.test_profile_visits import HOSTILE, OMAR, visit


async def test_research_reads_the_contacts_visit_every_pass(tmp_path: Path) -> None:
    async with open_workspace(Settings(data_dir=tmp_path / "d"), with_model=False) as rt:
        state = State(campaign="c1", channel="linkedin", account=ACME, contact=ACME.contacts[0])
        before = await research(state, Runtime(context=rt.deps))
        assert not any("duxsoup" in f.source for f in before["facts"])
        rt.profiles.record(
            read_visits([visit(Title="CTO", Summary=HOSTILE), visit(OMAR, Title="Head")])
        )
        out = await research(state, Runtime(context=rt.deps))
        mine = [f for f in out["facts"] if f.source.startswith("duxsoup:visit@")]
        assert [f.text for f in mine] == [
            "Dana Ruiz's current title on LinkedIn (seen by Dux-Soup on 2026-10-02): CTO"
        ]
        assert [q.source for q in out["quarantined"]] == ["duxsoup:visit@2026-10-02"]
        assert not any("Head" in f.text for f in out["facts"])
        rt.profiles.record(
            read_visits(visit(at="2026-11-01T00:00:00Z", stage="update", Title="CEO"))
        )
        again = await research(state, Runtime(context=rt.deps))
        assert any(f.text.endswith("on 2026-11-01): CEO") for f in again["facts"])
