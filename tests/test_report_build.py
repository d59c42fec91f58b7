"""Report content: numbers equal compare() and independent references, findings appear exactly when true."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from casceq.cli import main
from casceq.io.interchange import read_predictions
from casceq.report.build import build_report
from casceq.report.tables import Table, fmt, fmt_ci
from casceq.stats.compare import compare
from tests.stats_reference import loop_delta_kappa_ci
from tests.test_report_fixture import ACC, CONDITIONS, SYSTEMS, Fixture, N, make_run

KINDS = {s.name: s.kind for s in SYSTEMS}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    fx = make_run(tmp_path_factory.mktemp("report") / "run")
    return fx, build_report([fx.root])


def _table(result, key: str) -> Table:
    return next(t for s in result.sections for t in s.tables if t.key == key)


def _section(result, key: str):
    return next(s for s in result.sections if s.key == key)


def _reference_compare(fx: Fixture):
    return compare(read_predictions(fx.root), kinds=KINDS, n_bootstrap=200, seed=0, intersect=True)


def test_table2_equals_compare_and_the_constructed_accuracy(built) -> None:
    fx, res = built
    ref = {(r.system, r.task): r for r in _reference_compare(fx).accuracy if r.condition == "clean"}
    table = _table(res, "table2")
    tasks = table.columns[1:]
    assert set(tasks) == {"sst2", "ag_news"}
    for row in table.rows:
        system = row[0].text
        for task, cell in zip(tasks, row[1:], strict=True):
            r = ref[(system, task)]
            assert r.accuracy == ACC[(system, task)][0] / N  # the constructed truth
            assert cell.text == f"{fmt(r.accuracy)}{fmt_ci(r.ci)} n={N}"
            assert cell.ref is not None


def test_pair_table_equals_compare_and_sklearn(built) -> None:
    fx, res = built
    ref = {(p.a, p.b, p.task, p.condition): p for p in _reference_compare(fx).pairs}
    rows = _table(res, "pairs").rows
    assert len(rows) == len(ref) == 6 * 2 * len(CONDITIONS)
    for row in rows:
        a, b, _, task, cond = (c.text for c in row[:5])
        p = ref[(a, b, task, cond)]
        assert row[6].text == f"{fmt(p.kappa)}{fmt_ci(p.kappa_ci)}"
        assert row[2].text == ("★" if p.matched else "")
    # One kappa against sklearn, from the fixture's rows directly.
    la = {
        p.example_id: p.label
        for p in fx.predictions
        if (p.system, p.task, p.condition) == ("cascade-gemma", "ag_news", "babble@5")
    }
    lb = {
        p.example_id: p.label
        for p in fx.predictions
        if (p.system, p.task, p.condition) == ("speech-gemma", "ag_news", "babble@5")
    }
    ids = sorted(la)
    kappa = cohen_kappa_score([la[i] for i in ids], [lb[i] for i in ids])
    row = next(
        r
        for r in rows
        if [c.text for c in r[:2]] == ["cascade-gemma", "speech-gemma"]
        and r[4].text == "babble@5"
        and r[3].text == "ag_news"
    )
    assert row[6].text.startswith(f"{kappa:.3f}")


def test_confound_table_equals_an_independent_loop_bootstrap(built) -> None:
    fx, res = built
    rows = _table(res, "confound").rows
    assert len(rows) == 2 * len(CONDITIONS)  # one speech LLM x one matched x one mismatched
    by = {(p.system, p.task, p.condition, p.example_id): p.label for p in fx.predictions}
    for row in rows:
        s, task, cond, m = row[0].text, row[2].text, row[3].text, row[4].text
        x = row[5].text.split(" (")[0]
        ids = sorted(k[3] for k in by if k[:3] == (s, task, cond))
        ls, lm, lx = ([by[(name, task, cond, i)] for i in ids] for name in (s, m, x))
        delta = cohen_kappa_score(ls, lm) - cohen_kappa_score(ls, lx)
        # The run's 200 resamples, seed 0; one voice, so each example is its own item.
        ci = loop_delta_kappa_ci(ls, lm, lx, ids, 200, 0)
        assert row[8].text == f"{fmt(delta)}{fmt_ci(ci)}"


def test_attribution_equals_hand_count(built) -> None:
    fx, res = built
    by = {(p.system, p.task, p.condition, p.example_id): p for p in fx.predictions}
    assert res.attributions
    for att in res.attributions:
        ids = {k[3] for k in by if k[:3] == (att.a, att.task, att.condition)}
        shared = [
            i
            for i in ids
            if not by[(att.a, att.task, att.condition, i)].correct
            and not by[(att.b, att.task, att.condition, i)].correct
        ]
        asr = sum((att.cascade, att.task, att.condition, i) in fx.bad_transcripts for i in shared)
        assert (att.shared, att.asr, att.llm, att.unknown) == (len(shared), asr, len(shared) - asr, 0)
    counts = _table(res, "table3")
    some = next(a for a in res.attributions if a.asr and a.llm)
    row = next(
        r for r in counts.rows if [c.text for c in r[:4]] == [some.a, some.b, some.task, some.condition]
    )
    assert row[6].text.startswith(f"{some.asr} (") and row[7].text.startswith(f"{some.llm} (")
    # The "$5" / "five dollars" item is never counted as an ASR error.
    assert all(
        e.transcript_right
        for a in res.attributions
        for e in a.examples
        if e.example_id.startswith(f"{a.task}-0000@")
    )


def test_reversal_sentence_appears_when_constructed(built) -> None:
    _, res = built
    text = (res.out / "report.md").read_text()
    assert text.count("reverses by") == 1
    assert (
        "sst2: choosing speech-gemma over cascade-gemma on clean audio reverses by 20.0 points at 0 dB"
        in text
    )
    assert [(r.task, r.a, r.b) for r in res.reversals] == [("sst2", "speech-gemma", "cascade-gemma")]


def test_no_reversal_sentence_when_rankings_hold(tmp_path: Path) -> None:
    fx = make_run(tmp_path / "run", acc={("speech-gemma", "sst2"): (36, 35, 34, 33, 32)})
    res = build_report([fx.root], formats=["md"])
    assert "reverses by" not in res.markdown
    assert "No ranking reversal" in res.markdown


def test_sources_point_at_the_rows(built) -> None:
    fx, res = built
    cell = _table(res, "table2").rows[1][1]  # speech-gemma on sst2, clean
    src = next(s for s in res.sources if s.ref == cell.ref)
    assert src.n == N
    lines = (fx.root / "predictions.jsonl").read_text().splitlines()
    (loc,) = src.locations
    spans = re.search(r"lines (.+)$", loc).group(1).split(", ")
    numbers = [n for span in spans for n in range(int(span.split("-")[0]), int(span.split("-")[-1]) + 1)]
    records = [json.loads(lines[n - 1]) for n in numbers]
    assert {(r["system"], r["task"], r["condition"]) for r in records} == {("speech-gemma", "sst2", "clean")}
    assert len(records) == N
    assert (
        f"[{cell.ref}](#{cell.ref.lower()})" in res.markdown
        and f'<a id="{cell.ref.lower()}">' in res.markdown
    )


def test_files_and_formats(built) -> None:
    _, res = built
    names = {p.relative_to(res.out).as_posix() for p in res.files}
    assert {"report.md", "report.html", "tables.tex"} <= names
    for key in ("figure1", "figure2", "figure3"):
        png = (res.out / "figures" / f"{key}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        root = ET.parse(res.out / "figures" / f"{key}.svg").getroot()
        assert root.tag.endswith("svg") and float(root.get("width", "0").rstrip("pt")) > 100
    tex = (res.out / "tables.tex").read_text()
    n_tables = sum(len(s.tables) for s in res.sections)
    assert tex.count(r"\begin{tabular}") == n_tables
    assert r"ag\_news" in tex and "ag_news" not in tex.replace(r"ag\_news", "")


def test_mech_sections_say_not_run(built) -> None:
    _, res = built
    for key in ("probes", "lens", "implicit", "erasure"):
        assert _section(res, key).paragraphs[0].startswith("Not run:")


def test_single_system_says_no_pairs(tmp_path: Path) -> None:
    fx = make_run(tmp_path / "run", systems=(SYSTEMS[1],))
    res = build_report([fx.root], formats=["md", "html"])
    for key in ("agreement", "overlap", "shared", "confound"):
        assert _section(res, key).paragraphs == (
            "Only one system (speech-gemma): there are no pairs to compare.",
        )
    assert "no pairs to explore" in (res.out / "report.html").read_text()


def test_missing_system_and_conditions_are_named(tmp_path: Path) -> None:
    gone = {("speech-gemma", "babble@5")} | {("text-gemma", c) for c in CONDITIONS}
    fx = make_run(tmp_path / "run", skip=frozenset(gone))
    res = build_report([fx.root], formats=["md"])
    warnings = _section(res, "overview").warnings
    assert "Missing: system text-gemma has no predictions at all." in warnings
    assert "Missing: system speech-gemma has no predictions on sst2 under babble@5." in warnings
    row = next(r for r in _table(res, "noise").rows if [c.text for c in r[:2]] == ["speech-gemma", "sst2"])
    assert row[_table(res, "noise").columns.index("babble@5")].text == "missing"


def test_clean_only_run_says_what_figure3_needs(tmp_path: Path) -> None:
    fx = make_run(tmp_path / "run", conditions=("clean",))
    res = build_report([fx.root], formats=["md"])
    paras = _section(res, "noise").paragraphs
    assert "babble@15, babble@10, babble@5, babble@0" in paras[0]
    assert "Figure 3 needs clean audio and at least one babble@SNR condition" in paras[1]
    assert not res.reversals


def test_tiny_n_is_flagged(tmp_path: Path) -> None:
    fx = make_run(tmp_path / "run", n=10, conditions=("clean", "babble@0"))
    res = build_report([fx.root], formats=["md"])
    assert any("Only n = 10 items on sst2 (clean)" in w for w in _section(res, "overview").warnings)
    assert all(c.text.endswith("n=10†") for r in _table(res, "table2").rows for c in r[1:])
    assert all("[" in c.text for r in _table(res, "table2").rows for c in r[1:])  # CIs still shown


def test_interchange_files_without_manifest_then_with_audio(built, tmp_path: Path) -> None:
    fx, _ = built
    res = build_report([fx.root / "predictions.jsonl"], out=tmp_path / "a", formats=["md"])
    assert all(a.unknown == a.shared for a in res.attributions)
    assert any("No synthesis manifest" in p for p in _section(res, "shared").paragraphs)
    with_audio = build_report(
        [fx.root / "predictions.jsonl"], out=tmp_path / "b", formats=["md"], audio_dirs=[fx.root / "audio"]
    )
    assert sum(a.unknown for a in with_audio.attributions) == 0


def _write_mech(folder: Path) -> None:
    from casceq.mech.lens import LensLayer, LensResult
    from casceq.mech.probes import LayerScore, ProbeResults

    scores = tuple(
        LayerScore(p, layer, score, 40, 10, 4000, 1000, 64, 1.0)
        for layer, base in ((0, 0.9), (4, 0.6), (8, 0.3))
        for p, score in (("energy", base), ("pitch", base / 2), ("ctc", 1 - base), ("boc", 0.5))
    )
    probes = ProbeResults("whisper-tiny", "f" * 8, "cap", (0, 4, 8), scores, 0, "utterance", 50, "yin", "v")
    (folder / "probes").mkdir(parents=True)
    (folder / "probes" / "probes.json").write_text(probes.to_json())
    LensResult(
        "smollm2", "k", "f", "text", 5, 100, (LensLayer(0, 50, 5, 0.1), LensLayer(30, 60, 45, 0.75))
    ).write(folder)
    from casceq.mech.implicit import ImplicitResult, write_results

    write_results(folder, [ImplicitResult("smollm2", "smollm2-135m", "sst2", 30, "score", "whisper-tiny", 40, 0.8,
                                          0.85, 0.7, 0.61, 0.72, ())])  # fmt: skip
    (folder / "mech" / "erasure.json").write_text(json.dumps({
        "kind": "erasure", "version": 1, "model": "smollm2", "layers": [0, 4], "positions": "all", "affine": False,
        "ctc_targets": "probe", "n_fit_utterances": 60, "extra": {},
        "accuracy": [{"task": "sst2", "condition": c, "n": 40, "accuracy": a, "same_as_none": u}
                     for c, a, u in (("none", 0.8, 1.0), ("text", 0.55, 0.6), ("random", 0.79, 0.97))],
        "probes": [{"concept": "text", "layer": 4, "metric": "accuracy", "before": 0.9, "after": 0.26,
                    "chance": 0.25, "rank": 3, "n_train": 48, "n_test": 12}]}))  # fmt: skip
    (folder / "broken.json").write_text(
        json.dumps({"kind": "erasure", "model": "x", "accuracy": [{"task": "sst2"}]})
    )


def test_mech_sections_from_result_files(built, tmp_path: Path) -> None:
    fx, _ = built
    _write_mech(tmp_path / "mech")
    res = build_report([fx.root], out=tmp_path / "out", mech_dirs=[tmp_path / "mech"], formats=["md", "png"])
    t4 = next(t for t in _section(res, "probes").tables)
    assert t4.columns == ("layer", "energy R²", "pitch R²", "CTC 1 − CER", "BoC R²")
    assert [c.text for c in t4.rows[0]] == ["0", "0.900", "0.450", "0.100", "0.500"]
    src = next(s for s in res.sources if s.ref == t4.rows[0][1].ref)
    assert src.n == 50 and src.locations == (str(tmp_path / "mech" / "probes" / "probes.json"),)
    t5 = _section(res, "lens").tables[0]
    assert [c.text for c in t5.rows[1]] == ["30", "60", "0.750"]
    t6 = _section(res, "implicit").tables[0]
    assert [c.text for c in t6.rows[0]] == [
        "smollm2",
        "sst2",
        "30",
        "40",
        "0.610",
        "0.720",
        "0.800",
        "0.700",
        "0.850",
    ]
    erasure = _section(res, "erasure")
    assert [(r[2].text, r[4].text, r[5].text) for r in erasure.tables[0].rows] == [
        ("none", "0.800", "100%"),
        ("text", "0.550", "60%"),
        ("random", "0.790", "97%"),
    ]
    assert [c.text for c in erasure.tables[1].rows[0]][1:] == [
        "text",
        "4",
        "accuracy",
        "0.900",
        "0.260",
        "0.250",
    ]
    assert any("broken.json: malformed erasure results" in p for p in erasure.paragraphs)
    for key in ("figure4", "figure5", "figure6"):
        assert (res.out / "figures" / f"{key}.png").stat().st_size > 5000


def test_cli_report(built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fx, _ = built
    assert main(["report", str(fx.root), "--out", str(tmp_path / "cli"), "--formats", "md,tex"]) == 0
    out = capsys.readouterr().out
    assert "reverses by 20.0 points at 0 dB" in out
    assert (tmp_path / "cli" / "report.md").is_file() and (tmp_path / "cli" / "tables.tex").is_file()
    assert main(["report", str(fx.root), "--out", str(tmp_path / "x"), "--formats", "md,pdf"]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_without_matplotlib_html_goes_on_and_png_says_what_to_install(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from casceq.errors import MissingDependency

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    fx, _ = built
    res = build_report([fx.root], out=tmp_path / "h", formats=["html"])
    assert any("matplotlib is not installed" in w for w in _section(res, "overview").warnings)
    assert (
        not any(s.figures for s in res.sections)
        and 'class="figure"' not in (res.out / "report.html").read_text()
    )
    with pytest.raises(MissingDependency, match="matplotlib"):
        build_report([fx.root], out=tmp_path / "p", formats=["png"])


def test_embedded_noisy_clip_is_what_the_runner_heard(built) -> None:
    import base64
    import io

    import numpy as np
    import soundfile as sf

    from casceq.errors import CasceqError
    from casceq.report.explorer import encode_clip
    from casceq.run.items import Item, load_item_audio
    from casceq.types import AudioRef, Example

    fx, _ = built
    path = str(fx.root / "audio" / "sst2" / "piper-joe" / "sst2-0003.flac")
    ex = Example(
        "sst2-0003@piper-joe", "sst2", "t", "negative", audio=AudioRef(path), meta={"voice": "piper-joe"}
    )
    try:
        heard = load_item_audio(Item(ex, "sst2-0003", ex.audio), "babble@5", 0)
    except (CasceqError, OSError) as exc:
        pytest.skip(f"no babble source here: {exc}")
    uri, as_heard = encode_clip(path, "babble@5", ex.id, 0)
    clip, sr = sf.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), dtype="float32")
    assert as_heard and sr == 16000 and clip.shape == heard.shape
    assert np.abs(clip - heard).max() < 2 / 2**15  # equal up to 16-bit FLAC quantisation
    clean, _ = sf.read(path, dtype="float32")
    assert np.abs(clip - clean).mean() > 0.01  # and it is not the clean file
