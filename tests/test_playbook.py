"""The playbook is configuration: validated, swappable, and its errors name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gtm.domain.models import Account
from gtm.domain.playbook import PlaybookError, load_playbook


def test_default_playbook_carries_the_numbers() -> None:
    pb = load_playbook()
    assert pb.caps.linkedin_profile_visits_per_week == 400
    assert pb.caps.linkedin_connection_requests_per_week == 100
    assert pb.channels.linkedin_note_max_chars == 300
    assert (pb.goals.accept_rate, pb.goals.response_rate, pb.goals.meetings_per_week) == (
        0.30,
        0.20,
        5,
    )
    assert pb.red_flags.accept_rate_below == 0.15 and pb.red_flags.response_rate_below == 0.05
    assert [t.tier for t in pb.tiers] == [1, 2, 3]


def test_tiering_prefers_the_higher_tier() -> None:
    pb = load_playbook()
    both = Account(
        account_id="x", company="X", domain="x.ai", segment="legal tech", tech_stack=("Pinecone",)
    )
    match = pb.tier_of(both)
    assert match is not None and match.tier == 1 and match.segment == "legal tech"
    assert pb.tier_of(Account(account_id="y", company="Y", domain="y.ai", segment="bakery")) is None


def _custom(tmp_path: Path, **change: object) -> Path:
    root = Path(__file__).resolve().parents[1] / "gtm" / "domain" / "playbook.default.yaml"
    data = yaml.safe_load(root.read_text(encoding="utf-8"))
    for dotted, value in change.items():
        node = data
        *path, last = dotted.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    out = tmp_path / "team.yaml"
    out.write_text(yaml.safe_dump(data), encoding="utf-8")
    return out


def test_a_team_playbook_changes_behaviour(tmp_path: Path) -> None:
    pb = load_playbook(_custom(tmp_path, channels__linkedin_note_max_chars=200))
    assert pb.channels.linkedin_note_max_chars == 200 and pb.source.endswith("team.yaml")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            {"caps__linkedin_connection_requests_per_week": -1},
            "caps.linkedin_connection_requests_per_week",
        ),
        ({"guardrails__banned_phrases": ["(unclosed"]}, "guardrails.banned_phrases"),
        ({"goals__accept_rate": 3}, "goals.accept_rate"),
        # YAML's `true` is not the number 1: a cap of `true` is a mistake, not one a week.
        (
            {"caps__linkedin_connection_requests_per_week": True},
            "caps.linkedin_connection_requests_per_week",
        ),
        ({"cooldown__person_days": True}, "cooldown.person_days"),
    ],
)
def test_bad_playbook_names_file_and_field(
    tmp_path: Path, change: dict[str, object], where: str
) -> None:
    with pytest.raises(PlaybookError) as exc:
        load_playbook(_custom(tmp_path, **change))
    assert f"team.yaml: {where}" in str(exc.value)


def test_unreadable_playbooks(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="no such playbook"):
        load_playbook(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [", encoding="utf-8")
    with pytest.raises(PlaybookError, match="not valid YAML"):
        load_playbook(bad)


def test_each_step_has_one_character_limit() -> None:
    """The writer's prompt and the `length` check both read a step's limit from here."""
    lim = load_playbook().channels
    assert lim.max_chars("linkedin_connect") == lim.linkedin_note_max_chars == 300
    assert lim.max_chars("linkedin_message") == lim.linkedin_message_max_chars
    assert lim.max_chars("email") == lim.email_body_max_chars


def test_the_fingerprint_is_what_the_rules_say_not_where_they_were_read(tmp_path: Path) -> None:
    default = load_playbook(None)
    same = load_playbook(_custom(tmp_path))  # the same rules, re-dumped under another name
    assert same.source != default.source and same.fingerprint == default.fingerprint
    tighter = load_playbook(_custom(tmp_path, caps__linkedin_connection_requests_per_week=2))
    assert tighter.fingerprint != default.fingerprint
