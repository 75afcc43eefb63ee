"""The labeled real-message set (issue 19): it loads, it is big enough, and its split is honest."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from evals.messages import (
    DEV_MESSAGES,
    HELDOUT_MESSAGES,
    LabeledMessage,
    MessageSetError,
    load_messages,
)

MIN_TOTAL = 151  # what is collected so far (three batches); a floor: nothing may be lost
MAX_LABEL_GAP = 0.15  # share of `personalized` in dev vs held-out


@pytest.fixture(scope="module")
def splits() -> tuple[list[LabeledMessage], list[LabeledMessage]]:
    return load_messages(DEV_MESSAGES), load_messages(HELDOUT_MESSAGES)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def test_the_set_is_as_large_as_the_issue_asks(
    splits: tuple[list[LabeledMessage], list[LabeledMessage]],
) -> None:
    dev, held = splits
    assert len(dev) + len(held) >= MIN_TOTAL, (len(dev), len(held))


def test_ids_are_unique_across_both_splits(
    splits: tuple[list[LabeledMessage], list[LabeledMessage]],
) -> None:
    ids = [m.id for part in splits for m in part]
    assert [i for i, n in Counter(ids).items() if n > 1] == []


def test_every_item_names_an_http_source(
    splits: tuple[list[LabeledMessage], list[LabeledMessage]],
) -> None:
    for m in (m for part in splits for m in part):
        assert m.source_url.scheme in ("http", "https"), m.id
        assert m.source_url.host, m.id


def test_both_labels_in_both_splits_in_similar_proportions(
    splits: tuple[list[LabeledMessage], list[LabeledMessage]],
) -> None:
    shares = []
    for part in splits:
        labels = Counter(m.label for m in part)
        assert labels["generic"] > 0 and labels["personalized"] > 0, labels
        shares.append(labels["personalized"] / len(part))
    assert abs(shares[0] - shares[1]) <= MAX_LABEL_GAP, shares


def test_no_message_is_in_both_splits(
    splits: tuple[list[LabeledMessage], list[LabeledMessage]],
) -> None:
    dev, held = splits
    assert {_norm(m.text) for m in dev} & {_norm(m.text) for m in held} == set()


def test_no_source_lands_wholly_on_one_side_when_it_gives_several(
    splits: tuple[list[LabeledMessage], list[LabeledMessage]],
) -> None:
    dev, held = splits
    per_source = Counter(str(m.source_url) for part in splits for m in part)
    in_dev = {str(m.source_url) for m in dev}
    in_held = {str(m.source_url) for m in held}
    lopsided = [s for s, n in per_source.items() if n >= 3 and not (s in in_dev and s in in_held)]
    assert lopsided == []


_GOOD = """messages:
  - id: a1
    source_url: https://example.com/post
    source_title: A post
    retrieved: 2026-12-05
    channel: email
    label: generic
    page_verdict: none
    note: fits anyone
    text: Hi there
"""


def test_a_good_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text(_GOOD, encoding="utf-8")
    [m] = load_messages(f)
    assert (m.id, m.label, m.channel, str(m.retrieved)) == ("a1", "generic", "email", "2026-12-05")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (("label: generic", "label: bland"), r"bad\.yaml: a1: label: "),
        (("https://example.com/post", "ftp://example.com/post"), r"bad\.yaml: a1: source_url: "),
        (("    note: fits anyone\n", ""), r"bad\.yaml: a1: note: Field required"),
        (("channel: email", "channel: email\n    extra: 1"), r"bad\.yaml: a1: extra: "),
        (("id: a1", "id: 7"), r"bad\.yaml: #1: id: "),
    ],
)
def test_a_bad_item_is_named_with_file_item_and_field(
    tmp_path: Path, change: tuple[str, str], error: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(_GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(MessageSetError, match=error):
        load_messages(f)


def test_duplicate_ids_and_unreadable_files_fail_clearly(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text(_GOOD + _GOOD.removeprefix("messages:\n"), encoding="utf-8")
    with pytest.raises(MessageSetError, match=r"dup\.yaml: a1: id used twice"):
        load_messages(f)
    with pytest.raises(MessageSetError, match="cannot read"):
        load_messages(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n", encoding="utf-8")
    with pytest.raises(MessageSetError, match="top-level `messages:`"):
        load_messages(tmp_path / "list.yaml")
