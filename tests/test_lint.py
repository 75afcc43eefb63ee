"""`gtm lint`: every input kind, the text and JSON output, exit codes, and each bad input giving
one clear line while the other messages still run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gtm.app.lint import LintInputError, lint_bytes, read_messages
from gtm.domain.playbook import load_playbook

TEMPLATE = (
    "Hi {{first_name}},\n\nI hope this email finds you well. We help companies like yours "
    "increase revenue. Would you be open to a quick 15-minute call?\n\nBest,\nJoe"
)
PERSONAL = (
    "Hi Ines,\n\nYour talk at PGConf Lisbon on moving Ledgerly's ledger to logical replication "
    "was the clearest account of a cutover I have read. You mentioned the backfill of 1.2 "
    "billion rows took 9 days in March. What would you change about the replication slots?"
    "\n\nThanks,\nSam"
)


def _lint(tmp_path: Path, *args: str, stdin: bytes | None = None) -> Any:
    from gtm.cli import app

    return CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path / "data"), "lint", *args],
        input=stdin,
        env={"COLUMNS": "200"},
    )


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def test_text_file_with_two_messages_prints_verdicts_spans_and_exits_1(tmp_path: Path) -> None:
    f = _write(tmp_path, "seq.md", f"{TEMPLATE}\n---\n{PERSONAL}\n")
    r = _lint(tmp_path, f)
    assert r.exit_code == 1, r.output
    assert f"message 1 ({f}:1)  FAIL" in r.output
    assert f"message 2 ({f}:8)  PASS" in r.output
    assert "✗ placeholders: template debris: “{{first_name}}”" in r.output
    assert "- generic 'help companies like yours' vague value claim" in r.output
    assert "+ specific 'Your talk at' refers to something they made or said" in r.output
    assert "1 of 2 message(s) passed" in r.output


def test_all_passing_exits_0_and_the_threshold_is_an_option(tmp_path: Path) -> None:
    f = _write(tmp_path, "one.txt", PERSONAL)
    assert _lint(tmp_path, f).exit_code == 0
    r = _lint(tmp_path, f, "--min-specificity", "0.99")
    assert r.exit_code == 1
    assert "✗ specificity: specificity 0.89 is below 0.99" in r.output


def test_json_output_is_one_object_per_message(tmp_path: Path) -> None:
    f = _write(tmp_path, "seq.md", f"{TEMPLATE}\n---\n{PERSONAL}\n")
    r = _lint(tmp_path, f, "--format", "json")
    assert r.exit_code == 1
    objs = _json_lines(r.output)
    assert len(objs) == len(r.output.strip().splitlines()) == 2
    first, second = objs
    assert set(first) == {"index", "source", "verdict", "specificity", "findings", "error"}
    assert first["index"] == 1 and first["source"] == {"file": f, "line": 1, "row": None}
    assert first["verdict"] == "fail" and second["verdict"] == "pass"
    spec = first["specificity"]
    assert spec["score"] < 0.2 and spec["specific"] == []
    debris = spec["generic"][0]
    assert debris == {"start": 3, "end": 17, "text": "{{first_name}}", "why": "merge-field debris"}
    checks = {x["check"]: x for x in first["findings"]}
    assert set(checks) == {
        "placeholders",
        "length",
        "banned_phrases",
        "single_ask",
        "no_urgency",
        "no_injected_instructions",
        "specificity",
    }
    assert checks["placeholders"]["passed"] is False
    assert checks["placeholders"]["spans"][0]["start"] == 3
    assert checks["specificity"]["passed"] is False
    assert checks["length"]["passed"] is True
    assert second["specificity"]["score"] > 0.8


def test_csv_message_column_default_and_named(tmp_path: Path) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "Body", "notes"])
    w.writerow(["1", PERSONAL, "x"])
    w.writerow(["2", TEMPLATE, "y"])
    f = _write(tmp_path, "templates.csv", buf.getvalue())
    objs = _json_lines(_lint(tmp_path, f, "--format", "json").output)
    assert [(o["source"]["row"], o["verdict"]) for o in objs] == [(2, "pass"), (3, "fail")]
    named = _lint(tmp_path, f, "--column", "notes", "--format", "json")
    assert [o["verdict"] for o in _json_lines(named.output)] == ["fail", "fail"]
    missing = _lint(tmp_path, f, "--column", "copy")
    assert missing.exit_code == 2
    assert f"{f}: no column 'copy' (columns: id, Body, notes); pass --column NAME" in missing.output


def test_eml_body_and_subject(tmp_path: Path) -> None:
    eml = (
        "From: sam@example.com\nTo: ines@example.com\nSubject: Your PGConf talk\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n" + PERSONAL
    )
    f = _write(tmp_path, "note.eml", eml)
    (obj,) = _json_lines(_lint(tmp_path, f, "--format", "json").output)
    assert obj["verdict"] == "pass"
    assert obj["source"] == {"file": f, "line": None, "row": None}
    html = eml.replace("text/plain", "text/html").replace(PERSONAL, f"<p>{PERSONAL}</p>")
    (obj,) = _json_lines(
        _lint(tmp_path, _write(tmp_path, "h.eml", html), "--format", "json").output
    )
    assert obj["verdict"] == "pass"


def test_stdin_and_subject_line(tmp_path: Path) -> None:
    r = _lint(tmp_path, "-", "--format", "json", stdin=f"Subject: PGConf\n{PERSONAL}".encode())
    (obj,) = _json_lines(r.output)
    assert obj["source"]["file"] == "<stdin>" and obj["verdict"] == "pass"
    long_subject = "Subject: " + "x" * 100 + "\n" + PERSONAL
    (obj,) = _json_lines(
        _lint(tmp_path, "-", "--format", "json", stdin=long_subject.encode()).output
    )
    length = next(x for x in obj["findings"] if x["check"] == "length")
    assert length["finding"] == "subject is 100 characters, limit 78"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    f = _write(tmp_path, "one.txt", PERSONAL)
    assert _lint(tmp_path, f, "--format", "xml").exit_code == 2
    assert _lint(tmp_path, f, "--step", "fax").exit_code == 2
    assert _lint(tmp_path, f, "--min-specificity", "1.5").exit_code == 2
    r = _lint(tmp_path, str(tmp_path / "nope.txt"))
    assert r.exit_code == 2 and "nope.txt: no such file" in r.output


def test_empty_binary_and_utf16_files_give_one_line(tmp_path: Path) -> None:
    for name, data, says in (
        ("empty.txt", b"", "empty file, no message to lint"),
        ("blank.txt", b"  \n\n", "empty file, no message to lint"),
        ("img.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("u16.txt", PERSONAL.encode("utf-16"), "encoded as UTF-16"),
    ):
        f = _write(tmp_path, name, data)
        r = _lint(tmp_path, f)
        assert r.exit_code == 2
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and f"{f}: " in lines[0] and says in lines[0], r.output


def test_a_huge_message_is_refused_and_the_others_still_run(tmp_path: Path) -> None:
    huge = "word " * 25_000  # 125 KB
    f = _write(tmp_path, "seq.md", f"{PERSONAL}\n---\n{huge}\n---\n{TEMPLATE}\n")
    r = _lint(tmp_path, f, "--format", "json")
    assert r.exit_code == 1
    objs = _json_lines(r.output)
    assert [o["verdict"] for o in objs] == ["pass", "error", "fail"]
    assert objs[1]["error"] == f"{f}:8 (message 2): 122 KB, over the 100 KB limit; not linted"
    text = _lint(tmp_path, f)
    assert f"error: {f}:8 (message 2): 122 KB, over the 100 KB limit" in text.output
    assert "message 3" in text.output


def test_a_row_that_is_not_utf8_is_named_and_the_others_run(tmp_path: Path) -> None:
    data = b"message\n" + b'"' + "Caf\u00e9 talk".encode("latin-1") + b'"\n"' + PERSONAL.encode()
    f = _write(tmp_path, "rows.csv", data + b'"\n')
    objs = _json_lines(_lint(tmp_path, f, "--format", "json").output)
    assert [o["verdict"] for o in objs] == ["error", "pass"]
    assert objs[0]["error"] == (
        f"{f} row 2 (message 1): not UTF-8 text (byte 0xE9; tried utf-8 and utf-8-sig); "
        "save the file as UTF-8"
    )


def test_bom_empty_rows_and_unknown_eml_charset(tmp_path: Path) -> None:
    f = _write(tmp_path, "bom.txt", b"\xef\xbb\xbf" + PERSONAL.encode())
    (obj,) = _json_lines(_lint(tmp_path, f, "--format", "json").output)
    assert obj["verdict"] == "pass"
    f = _write(tmp_path, "gap.md", f"{PERSONAL}\n---\n\n---\n{PERSONAL}")
    objs = _json_lines(_lint(tmp_path, f, "--format", "json").output)
    assert [o["verdict"] for o in objs] == ["pass", "error", "pass"]
    assert objs[1]["error"] == f"{f}:8 (message 2): empty message"
    eml = "Subject: hi\nContent-Type: text/plain; charset=x-klingon\n\nHello there"
    r = _lint(tmp_path, _write(tmp_path, "k.eml", eml))
    assert r.exit_code == 1
    assert "the body is in an unknown encoding 'x-klingon'" in r.output


def test_markup_in_messages_is_printed_literally(tmp_path: Path) -> None:
    f = _write(tmp_path, "m.txt", "[bold red]Hi[/bold red] {{first_name}}, how is [Company]?")
    r = _lint(tmp_path, f)
    assert "✗ placeholders: template debris: “{{first_name}}”, “[Company]”" in r.output
    assert "- generic '[Company]' merge-field debris" in r.output
    odd = _write(tmp_path, "[red]x.txt", b"")
    assert f"error: {odd}: empty file" in _lint(tmp_path, odd).output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.text(max_size=400), st.sampled_from(["a.txt", "a.csv", "a.eml"]))
def test_no_input_crashes_it(raw: bytes, text: str, name: str) -> None:
    pb = load_playbook()
    for data in (
        raw,
        text.encode("utf-8", errors="surrogatepass"),
        f"message\n{text}".encode("utf-8", errors="surrogatepass"),
    ):
        try:
            results = lint_bytes(data, name, pb)
        except LintInputError as exc:
            assert str(exc).startswith(f"{name}: ") and "\n" not in str(exc)
            continue
        for r in results:
            assert r.verdict in ("pass", "fail", "error")
            json.dumps(r.as_dict())
    assert read_messages(b"x", "a.txt")[0].body == "x"
