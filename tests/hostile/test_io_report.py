"""Hostile inputs to the interchange, compare, import, export and report commands (docs/security.md).

Each test is one case of the hostile-input review: it fed casceq what a careless or malicious user could, and
asserts what the user must see instead of a traceback, a silently wrong result or a leaked file.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from casceq.cli import main
from casceq.io.interchange import read_predictions
from casceq.io.store import Store

SECRET = b"TOP-SECRET-CONTENT-xyz\n"


def _rec(system, eid, pred, gold, **extra):
    return {"system": system, "task": "sst2", "example_id": eid, "prediction": pred, "gold": gold, **extra}


def _jsonl(path: Path, records) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), "utf-8")
    return str(path)


GOLD = ["positive", "negative", "positive", "negative", "positive", "negative"]
PRED_A = ["positive", "negative", "negative", "negative", "positive", "positive"]
PRED_B = ["positive", "positive", "negative", "negative", "negative", "positive"]


def _pair(tmp: Path, *, cond_a="clean", cond_b="clean", name_a="a", name_b="b", out_a=None, out_b=None,
          transcripts=None):  # fmt: skip
    """Two files of systems that disagree on some of six sst2 examples (ids e0..e5; e2 and e5 both wrong)."""
    ra = [_rec(name_a, f"e{i}", (out_a or PRED_A)[i], g, condition=cond_a) for i, g in enumerate(GOLD)]
    rb = [_rec(name_b, f"e{i}", (out_b or PRED_B)[i], g, condition=cond_b) for i, g in enumerate(GOLD)]
    for r, t in zip(rb, transcripts or [], strict=False):
        r["transcript"] = t
    return _jsonl(tmp / "pa.jsonl", ra), _jsonl(tmp / "pb.jsonl", rb)


# --- 1. report --audio: nothing but audio from under the manifest's folder --------------------------------


def _flac(path: Path, seconds: float = 0.25, freq: float = 440.0) -> np.ndarray:
    from casceq.audio.io import write_flac

    t = np.arange(int(16000 * seconds)) / 16000
    wav = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    write_flac(path, wav)
    return wav


def _manifest(folder: Path, paths: dict[str, str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        {"example_id": eid, "task": "sst2", "voice": "v", "path": p, "duration": 0.25, "sample_rate": 16000,
         "text": f"text {eid}", "spoken_text": f"text {eid}", "sha256": "0" * 64}
        for eid, p in paths.items()
    ]  # fmt: skip
    _jsonl(folder / "manifest.jsonl", lines)
    return str(folder)


def _report(tmp: Path, *extra: str) -> int:
    a, b = _pair(tmp)
    return main(["report", a, b, "--out", str(tmp / "rep"), "--formats", "md,html", *extra])


def _everything_written(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file()) if folder.exists() else b""


def test_report_audio_refuses_absolute_and_parent_paths(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    evil = _manifest(tmp_path / "x" / "evil", {"e1": str(secret), "e2": "../../secret.txt"})
    assert _report(tmp_path, "--audio", evil) == 2
    err = capsys.readouterr().err
    assert "manifest.jsonl:1" in err and str(secret) in err and "outside" in err
    written = _everything_written(tmp_path / "rep")
    assert base64.b64encode(SECRET) not in written and SECRET not in written


def test_report_audio_refuses_a_file_that_is_not_audio(tmp_path, capsys):
    folder = tmp_path / "synth"
    folder.mkdir()
    (folder / "e1.flac").write_bytes(SECRET)  # under the folder, named like audio, but text
    assert _report(tmp_path, "--audio", _manifest(folder, {"e1": "e1.flac"})) == 2
    err = capsys.readouterr().err
    assert "e1.flac" in err and "not audio" in err
    assert base64.b64encode(SECRET) not in _everything_written(tmp_path / "rep")


def test_report_audio_missing_file_is_a_clear_error(tmp_path, capsys):
    folder = _manifest(tmp_path / "synth", {"e1": "gone.flac"})
    assert _report(tmp_path, "--audio", folder) == 2
    err = capsys.readouterr().err
    assert "manifest.jsonl:1" in err and "gone.flac" in err and "not found" in err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"path": 5}', "manifest.jsonl:1: field 'path' must be a string, got 5"),
        ('{"duration": "long"}', "manifest.jsonl:1: field 'duration' must be a finite number >= 0"),
        (None, "unreadable synthesis manifest or summary"),
    ],
)
def test_report_audio_malformed_manifest_is_a_clear_error(tmp_path, capsys, line, message):
    folder = tmp_path / "synth"
    _flac(folder / "e1.flac")
    _manifest(folder, {"e1": "e1.flac"})
    manifest = folder / "manifest.jsonl"
    if line is None:
        manifest.write_bytes(b"\xff\xfe\n")  # not UTF-8
    else:
        entry = {**json.loads(manifest.read_text("utf-8")), **json.loads(line)}
        manifest.write_text(json.dumps(entry) + "\n", "utf-8")
    assert _report(tmp_path, "--audio", str(folder)) == 2
    assert message in capsys.readouterr().err


def _embedded_clips(html_text: str) -> list[np.ndarray]:
    import soundfile as sf

    uris = re.findall(r"data:audio/flac;base64,([A-Za-z0-9+/=]+)", html_text)
    return [sf.read(io.BytesIO(base64.b64decode(u)), dtype="float32")[0] for u in uris]


def test_report_audio_embeds_real_audio_and_audio_root_widens_the_allowed_folder(tmp_path, capsys):
    folder = tmp_path / "synth"
    wav = _flac(folder / "e1.flac")
    shared = tmp_path / "shared"
    other = _flac(shared / "e2.flac", freq=220.0)
    manifest = _manifest(folder, {"e1": "e1.flac", "e2": "../shared/e2.flac"})
    assert _report(tmp_path, "--audio", manifest) == 2  # e2 is outside the manifest's folder
    assert "outside" in capsys.readouterr().err
    assert _report(tmp_path, "--audio", manifest, "--audio-root", str(shared)) == 0
    clips = _embedded_clips((tmp_path / "rep" / "report.html").read_text("utf-8"))
    assert len(clips) == 2  # both disagreements, decoded back to the samples written (16-bit FLAC)
    for want in (wav, other):
        assert any(len(got) == len(want) and np.abs(got - want).max() <= 1 / 2**15 for got in clips)


# --- 2. import into an existing store checks the new rows against the stored ones ---------------------------


def _store_rows(store: str) -> list[tuple]:
    with Store(store, read_only=True) as s:
        return [(p.system, p.example_id, p.gold, p.backbone, p.output) for p in s.predictions()]


def test_import_refuses_a_gold_that_differs_from_the_stored_one(tmp_path, capsys):
    a, _ = _pair(tmp_path)
    store = str(tmp_path / "g.sqlite")
    assert main(["import", a, "--store", store]) == 0
    before = _store_rows(store)
    flipped = [_rec("b", f"e{i}", PRED_B[i], "negative" if g == "positive" else "positive") for i, g in
               enumerate(GOLD)]  # fmt: skip
    bad = _jsonl(tmp_path / "b_goldflip.jsonl", flipped)
    assert main(["import", bad, "--store", store]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: gold 'negative' of sst2 example 'e0' differs from gold 'positive'" in err
    assert _store_rows(store) == before  # nothing written
    assert main(["compare", store, "--bootstrap", "0"]) == 0  # and the store is still usable


def test_import_refuses_a_backbone_that_differs_from_the_stored_one(tmp_path, capsys):
    rows = [_rec("a", f"e{i}", PRED_A[i], g, backbone="bbx") for i, g in enumerate(GOLD)]
    store = str(tmp_path / "g.sqlite")
    assert main(["import", _jsonl(tmp_path / "a_bbx.jsonl", rows), "--store", store]) == 0
    new = [_rec("a", "e9", "positive", "positive", backbone="bb")]
    path = _jsonl(tmp_path / "a_bb.jsonl", new)
    assert main(["import", path, "--store", store]) == 2
    assert f"{path}:1: system 'a' has backbone 'bb' here but 'bbx' at" in capsys.readouterr().err
    assert len(_store_rows(store)) == 6


def test_import_may_replace_every_row_of_an_example(tmp_path, capsys):
    # A corrected gold for every system of an example leaves the store consistent: allowed (a replacement).
    a, b = _pair(tmp_path)
    store = str(tmp_path / "g.sqlite")
    assert main(["import", a, b, "--store", store]) == 0
    fixed = [_rec(s, "e0", "positive", "negative") for s in ("a", "b")]
    assert main(["import", _jsonl(tmp_path / "fix.jsonl", fixed), "--store", store]) == 0
    assert "2 replaced" in capsys.readouterr().out
    assert main(["compare", store, "--bootstrap", "0"]) == 0


# --- 3. condition spellings ---------------------------------------------------------------------------------


def test_condition_spellings_are_one_condition(tmp_path, capsys):
    a, b = _pair(tmp_path, cond_a="babble@15", cond_b="BABBLE@+15.0")
    assert {p.condition for p in read_predictions([a, b])} == {"babble@15"}
    out = tmp_path / "c.json"
    assert main(["compare", a, b, "--bootstrap", "0", "--json", str(out)]) == 0
    pairs = json.loads(out.read_text())["pairs"]
    assert [(p["a"], p["b"], p["condition"]) for p in pairs] == [("a", "b", "babble@15")]


def test_condition_spellings_meet_in_export_filters_and_report_row_locations(tmp_path, capsys):
    a, b = _pair(tmp_path, cond_a="Babble@+5.0", cond_b="babble@5")
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, b, "--store", store]) == 0
    out = tmp_path / "o.jsonl"
    assert main(["export", "--store", store, "--out", str(out), "--condition", "BABBLE@5"]) == 0
    assert {json.loads(line)["condition"] for line in out.open()} == {"babble@5"}
    assert main(["report", a, b, "--out", str(tmp_path / "rep"), "--formats", "md"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text("utf-8")
    assert "pa.jsonl: lines 1-6" in md  # rows of the differently spelt file are still located by line


def test_an_invalid_condition_is_refused_with_file_and_line(tmp_path, capsys):
    a, b = _pair(tmp_path, cond_b="babble@foo")
    assert main(["compare", a, b]) == 2
    assert f"{b}:1: unknown condition 'babble@foo'" in capsys.readouterr().err


def test_compare_fails_when_no_pair_shares_a_task_and_condition(tmp_path, capsys):
    a, b = _pair(tmp_path, cond_a="babble@15", cond_b="babble@10")
    out = tmp_path / "c.json"
    assert main(["compare", a, b, "--bootstrap", "0", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "a:b shares no classification task and condition" in captured.out
    assert "no pair of systems could be compared" in captured.err
    assert json.loads(out.read_text())["pairs"] == []  # the accuracy rows are still written


# --- 4. names are text, never markup ------------------------------------------------------------------------


def test_system_names_with_rich_markup_are_printed_as_text(tmp_path, capsys):
    a, b = _pair(tmp_path, name_a="sys[/]", name_b="[red]x[/red]")
    out = tmp_path / "c.json"
    assert main(["compare", a, b, "--bootstrap", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sys[/]" in text and "[red]x[/red]" in text
    assert json.loads(out.read_text())["pairs"][0]["b"] == "[red]x[/red]"


def test_system_names_with_mathtext_are_drawn_as_text(tmp_path, capsys):
    a, b = _pair(tmp_path, name_a="$\\frac{$", name_b="b$^$")
    assert main(["report", a, b, "--out", str(tmp_path / "rep"), "--formats", "svg"]) == 0
    svg = (tmp_path / "rep" / "figures" / "figure1.svg").read_text("utf-8")
    assert "$\\frac{$" in svg and "b$^$" in svg  # the names as written (SVG keeps text as text)


# --- 5. HTML and Markdown report: predictions are data ------------------------------------------------------

# "<!--<script>" puts a <script> whose JSON escapes only "</" into HTML's double-escaped state: its own
# "</script>" then no longer ends it and the explorer's code is swallowed as data.
HOSTILE = ["<!--<script>", "</script><script>alert(1)</script>", "a & b <img src=x onerror=alert(2)>",
           "positive", "<!--", "<script>alert(3)</script>"]  # fmt: skip


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.scripts: dict[str, str] = {}
        self.srcs: set[tuple[str, str | None]] = set()

    def handle_starttag(self, tag, attrs):
        self.srcs.add((tag, dict(attrs).get("src")))
        if tag == "script":
            self.current = dict(attrs).get("id") or "inline"
            self.scripts[self.current] = ""

    def handle_data(self, data):
        if self.current is not None:
            self.scripts[self.current] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self.current = None


def _hostile_report(tmp: Path) -> Path:
    a, b = _pair(tmp, out_a=HOSTILE, transcripts=HOSTILE)
    assert main(["report", a, b, "--out", str(tmp / "rep"), "--formats", "md,html"]) == 0
    return tmp / "rep"


def test_explorer_json_holds_no_angle_bracket_and_decodes_to_the_predictions(tmp_path):
    html_text = (_hostile_report(tmp_path) / "report.html").read_text("utf-8")
    parser = _Scripts()
    parser.feed(html_text)
    raw = parser.scripts["explorer-data"]
    # No "<" at all: the script element cannot enter any of HTML's script-data escape states.
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    outputs = [o for g in data["groups"] for o in g["outputs"]["a"]]
    assert outputs == HOSTILE  # ids e0..e5 sorted: the file order
    assert "inline" in parser.scripts and "function" in parser.scripts["inline"]


CHROMIUM = __import__("shutil").which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not found")
def test_explorer_script_runs_in_chromium_with_hostile_predictions(tmp_path):
    from tests.test_report_html import _chromium

    page = _hostile_report(tmp_path) / "report.html"
    dom = _chromium(tmp_path / "profile", "--dump-dom", page.as_uri()).stdout.decode("utf-8", "replace")
    count = re.search(r'<span id="ex-count"[^>]*>(.*?)</span>', dom, re.S)
    assert count is not None and "example(s)" in count.group(1)  # the explorer's script ran
    parser = _Scripts()
    parser.feed(dom)  # no element came from a prediction: the page's own two scripts, no <img src=x>
    assert sorted(parser.scripts) == ["explorer-data", "inline"] and ("img", "x") not in parser.srcs


def test_report_md_escapes_html_from_predictions(tmp_path):
    from markdown_it import (
        MarkdownIt,
    )  # rich's Markdown parser: CommonMark, here with raw HTML on like GitHub

    md = (_hostile_report(tmp_path) / "report.md").read_text("utf-8")
    assert "onerror" in md and "alert(3)" in md  # the transcripts of shared errors are shown...
    parser = _Scripts()
    parser.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(md))
    assert not parser.scripts and ("img", "x") not in parser.srcs  # ...but never as HTML elements
    assert ("a", None) in parser.srcs  # positive control: the report's own anchors are still HTML


# --- 6. misleading or missing messages ----------------------------------------------------------------------


def test_undefined_kappa_says_why(tmp_path, capsys):
    a, b = _pair(tmp_path, out_a=["positive"] * 6, out_b=["positive"] * 6)
    out = tmp_path / "c.json"
    assert main(["compare", a, b, "--bootstrap", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    reason = "both systems gave one and the same label ('positive') to every example"
    assert "kappa of a and b on sst2 / clean is undefined" in text and reason in text
    result = json.loads(out.read_text())
    assert result["pairs"][0]["kappa"] is None
    assert any(reason in n for n in result["notes"])


def test_export_to_an_existing_folder_is_a_clear_error(tmp_path, capsys):
    a, _ = _pair(tmp_path)
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, "--store", store]) == 0
    adir = tmp_path / "adir"
    adir.mkdir()
    assert main(["export", "--store", store, "--out", str(adir)]) == 2
    assert f"{adir}: is a folder" in capsys.readouterr().err


def test_output_paths_blocked_by_a_file_or_folder_are_clear_errors(tmp_path, capsys):
    a, b = _pair(tmp_path)
    (tmp_path / "afile").write_text("mine\n")
    (tmp_path / "adir").mkdir()
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, "--store", store]) == 0
    cases = [
        (["compare", a, b, "--bootstrap", "0", "--json", str(tmp_path / "adir")], "adir: is a folder"),
        (["compare", a, b, "--json", str(tmp_path / "afile" / "c.json")], "cannot create the folder"),
        (["report", a, b, "--out", str(tmp_path / "afile"), "--formats", "md"], "cannot use as the output folder"),
        (["export", "--store", store, "--out", str(tmp_path / "afile" / "o.jsonl")], "cannot create the folder"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine\n"


def test_a_junk_sqlite_file_is_named_as_not_a_database(tmp_path, capsys):
    a, _ = _pair(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\xff\xfe not a database \x00\x01")
    assert main(["compare", a, str(junk)]) == 2
    err = capsys.readouterr().err
    assert f"{junk}: not an SQLite database" in err and "UTF-8" not in err


def test_a_store_with_two_runs_asks_for_run(tmp_path, capsys):
    a, b = _pair(tmp_path)
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, b, "--store", store, "--run", "r1"]) == 0
    assert main(["import", a, b, "--store", store, "--run", "r2"]) == 0
    assert main(["compare", store]) == 2
    err = capsys.readouterr().err
    assert "runs r1, r2" in err and "--run" in err and "duplicate prediction" not in err
    assert main(["compare", store, "--run", "r2", "--bootstrap", "0"]) == 0


def test_a_system_without_rows_for_a_task_gets_a_note(tmp_path, capsys):
    a, b = _pair(tmp_path)
    extra = [
        {"system": "a", "task": "ag_news", "example_id": f"n{i}", "prediction": "World", "gold": "World"}
        for i in range(3)
    ]
    c = _jsonl(tmp_path / "pc.jsonl", extra)
    assert main(["compare", a, b, c, "--bootstrap", "0"]) == 0
    assert "system b has no predictions for task ag_news" in capsys.readouterr().out


def test_a_duplicate_json_key_is_refused(tmp_path, capsys):
    line = '{"system": "a", "task": "sst2", "example_id": "e0", "prediction": "positive", "gold": "positive", ' \
           '"gold": "negative"}'  # fmt: skip
    path = _jsonl(tmp_path / "dup.jsonl", [line])
    assert main(["compare", path]) == 2
    assert f"{path}:1: duplicate key 'gold'" in capsys.readouterr().err


def test_a_store_of_imported_interchange_files_reports_and_compares(tmp_path, capsys):
    """`import` registers such systems with kind 'imported'; report refused it as an unknown kind (exit 2)."""
    a, b = _pair(tmp_path)
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, b, "--store", store]) == 0
    assert main(["report", store, "--out", str(tmp_path / "rep"), "--formats", "md"]) == 0
    assert main(["compare", store, "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "a=speech_llm (no transcripts), b=speech_llm (no transcripts)" in out  # inferred, not 'imported'
    assert "| a | speech_llm |" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
