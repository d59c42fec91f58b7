"""The stage layer: one context loads a model spec once for every stage; typed results round-trip through JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests import tiny_models as tm  # noqa: E402

SR = 16_000
TEXTS = ["a fine movie", "dull and slow", "great fun", "a mess"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny native Ultravox checkpoint folder (random weights)."""
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    root = tmp_path_factory.mktemp("stages")
    cfg = UltravoxNativeConfig(
        encoder=str(tm.tiny_whisper(root / "w")), backbone=str(tm.tiny_causal_lm(root / "lm")), hidden_dim=64
    )
    return Path(UltravoxNativeBackend.create(cfg, seed=7).save(root / "ckpt"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four wav files with same-name transcripts and an items file labelling them (sst2)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    lines = []
    for i, text in enumerate(TEXTS):
        wav = (0.1 * rng.standard_normal(int((0.6 + 0.2 * i) * SR))).astype(np.float32)
        sf.write(folder / f"e{i}.wav", wav, SR)
        (folder / f"e{i}.txt").write_text(text)
        label = ("positive", "negative")[i % 2]
        lines.append(json.dumps({"id": f"e{i}", "audio": f"e{i}.wav", "text": text, "label": label}))
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_one_context_loads_the_speech_llm_once_for_capture_lens_and_implicit(
    checkpoint: Path, clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casceq.mech.shards import CaptureReader
    from casceq.stages import context
    from casceq.stages.capture import CaptureConfig, run_capture
    from casceq.stages.context import ContextConfig, ItemsConfig, StageContext
    from casceq.stages.implicit import ImplicitConfig, run_implicit
    from casceq.stages.lens import LensConfig, run_lens

    loads: list[str] = []
    real = context.make_speech_llm

    def counting(spec: Any) -> Any:
        loads.append(spec.model)
        return real(spec)

    monkeypatch.setattr(context, "make_speech_llm", counting)
    spec = f"ultravox-native:{checkpoint}"
    config = ContextConfig(model=spec, dtype="float32", items=ItemsConfig(file=str(clips / "items.jsonl")))
    ctx = StageContext(config)
    cap = run_capture(
        CaptureConfig(
            model=spec, out=str(tmp_path / "cap"), audio_dir=str(clips), layers=(1, 2), pitch=False
        ),
        ctx,
    )
    assert cap.n_utterances == 4 and len(CaptureReader(tmp_path / "cap").utterances) == 4
    lens = run_lens(LensConfig(model=spec, out=str(tmp_path / "lens"), capture=str(tmp_path / "cap")), ctx)
    assert [r.layer for r in lens.layers] == [1, 2] and lens.n_utterances == 4
    implicit = run_implicit(ImplicitConfig(tasks=("sst2",), out=str(tmp_path / "impl"), layer=1), ctx)
    assert implicit.results[0].n == 4
    assert loads == [str(checkpoint)]  # one load shared by the three stages
    # positive control: a second context loads it again (the counter sees every load)
    StageContext(config).speech_llm()
    assert loads == [str(checkpoint)] * 2


def _expected_provenance(argv: list[str]) -> dict[str, Any]:
    """The fields the lens command recorded before the stage layer, computed here from their sources."""
    import casceq.stages.context as module

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=Path(module.__file__).parent, capture_output=True, text=True
    ).stdout.strip()
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        found = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        cpu = found[0].split(":", 1)[1].strip() if found else ""
    return {
        "command": " ".join(argv),
        "commit": commit,
        "machine": f"{platform.machine()} {cpu}".strip(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def test_lens_command_records_the_provenance_of_the_old_command(tmp_path: Path) -> None:
    import sys

    from casceq.cli import main
    from casceq.stages.context import provenance

    lm = tm.tiny_causal_lm(tmp_path / "lm")
    assert (
        main(["lens", "--model", str(lm), "--text", "hello there world", "--out", str(tmp_path / "o")]) == 0
    )
    extra = json.loads((tmp_path / "o" / "mech" / "lens.json").read_text())["extra"]
    argv = ["casceq", "lens", *sys.argv[2:]]  # what the command records (the process's own arguments)
    assert extra == _expected_provenance(argv)
    assert provenance(["casceq", "x"]) == _expected_provenance(["casceq", "x"])


def test_context_refuses_another_seed_than_the_runs_and_speech_system_without_a_run(tmp_path: Path) -> None:
    from casceq.errors import InputError
    from casceq.stages.context import ContextConfig, ItemsConfig, StageContext

    with pytest.raises(InputError, match="--speech-system needs --calibration"):
        StageContext(ContextConfig(model="x:y", speech_system="S")).speech_calibration()
    assert StageContext(ContextConfig(model="x:y")).seed == 0
    assert StageContext(ContextConfig(model="x:y", items=ItemsConfig(seed=4))).seed == 4
    # reproduce: the run folder is made later; until it exists there are no offsets and no seed check
    later = ContextConfig(model="x:y", run_dir=str(tmp_path), run_required=False, items=ItemsConfig(seed=3))
    assert StageContext(later).seed == 3 and StageContext(later).offsets("Speech-LLM") == {}


# --- typed results: to_json / from_json ------------------------------------------------------------------


def _lens_result() -> Any:
    from casceq.mech.lens import LensExample, LensLayer, LensResult

    layers = (
        LensLayer(0, 10, 2, 0.2, top_tokens=(("the", 3), ("a", 1))),
        LensLayer(4, 0, 0, None, identity=0.5, next_token=0.25),
    )
    return LensResult(
        "m:x", "speech:m", "abc", "capture", 3, 40, layers, (LensExample("u1", "hi", 4, "hi"),), {"k": 1}
    )


def _implicit_results() -> Any:
    from casceq.mech.implicit import ImplicitResult, ImplicitRow
    from casceq.stages.implicit import ImplicitResults

    rows = (ImplicitRow("e0@v", "positive", "positive", "negative", "positive", "fine", "fine movie"),)
    res = ImplicitResult(
        "m", "b", "sst2", 2, "score", "reference", 1, 1.0, 0.0, 1.0, 0.5, 0.25, rows, (0.1, -0.1)
    )
    return ImplicitResults((res,), {"command": "casceq implicit"})


def _erasure_result() -> Any:
    from casceq.mech.erasure_concepts import ErasureResult, ProbeCheck, TaskAccuracy

    acc = (
        TaskAccuracy("sst2", "none", 2, 1.0, 1.0, (True, True)),
        TaskAccuracy("sst2", "text", 2, 0.5, 0.5, (True, False)),
    )
    probes = (ProbeCheck("text", 3, "accuracy", 0.9, 0.5, 0.5, 4, 10, 5),)
    return ErasureResult(
        "m", (1, 3), "all", False, "chars", 6, acc, probes, {"sst2": [0.1, -0.1]}, {"commit": "x"},
        {"sst2": ["positive", "negative"]}, {"sst2": ["a@v", "b@v"]}, ["c", "d"],
    )  # fmt: skip


def test_typed_results_round_trip_through_json(tmp_path: Path) -> None:
    from casceq.mech.erasure_concepts import ErasureResult
    from casceq.mech.lens import LensLayer, LensResult
    from casceq.mech.probes import LayerScore, ProbeResults
    from casceq.stages.capture import CaptureResult
    from casceq.stages.implicit import ImplicitResults
    from casceq.stages.lens import LensControl

    def again(obj: Any) -> Any:
        return type(obj).from_json(json.loads(json.dumps(obj.to_json())))

    lens, implicit, erasure = _lens_result(), _implicit_results(), _erasure_result()
    assert again(lens) == lens and isinstance(again(lens), LensResult)
    assert again(implicit) == implicit and isinstance(again(implicit), ImplicitResults)
    assert again(erasure) == erasure and isinstance(again(erasure), ErasureResult)
    control = LensControl((LensLayer(2, 5, 1, 0.2, top_tokens=(("x", 2),)),))
    assert again(control) == control
    cap = CaptureResult("cap", 4, 4, 4, 100, (1, 2), 4, 64, 1, 0)
    assert again(cap) == cap
    probes = ProbeResults(
        "m",
        "f",
        "cap",
        (0,),
        (LayerScore("energy", 0, 0.5, 3, 1, 30, 10, 64, 1.0),),
        0,
        "utterance",
        4,
        "t",
        "v",
    )
    assert ProbeResults.from_json(probes.to_json()) == probes
    # an undefined kappa is null in the file and NaN again after reading
    nan = type(implicit.results[0])(**{**implicit.results[0].__dict__, "kappa_impl": math.nan})
    back = ImplicitResults.from_json(json.loads(json.dumps(ImplicitResults((nan,)).to_json())))
    assert json.loads(json.dumps(nan.to_json()))["kappa_impl"] is None and math.isnan(
        back.results[0].kappa_impl
    )


def test_files_written_by_the_writers_read_back_byte_for_byte(tmp_path: Path) -> None:
    from casceq.mech.implicit import write_results
    from casceq.stages.erase import read_erasure
    from casceq.stages.implicit import read_implicit
    from casceq.stages.lens import read_lens

    lens, implicit, erasure = _lens_result(), _implicit_results(), _erasure_result()
    paths = {
        "lens": lens.write(tmp_path / "l"),
        "implicit": write_results(tmp_path / "i", implicit.results, implicit.extra),
        "erasure": erasure.write(tmp_path / "e"),
    }
    assert read_lens(paths["lens"]) == lens
    assert read_implicit(paths["implicit"]) == implicit
    assert read_erasure(paths["erasure"]) == erasure
    # the file formats are unchanged: writing what was read gives the same bytes
    text = paths["implicit"].read_text()
    assert json.dumps(read_implicit(paths["implicit"]).to_json(), indent=1, ensure_ascii=False) + "\n" == text
    assert (
        json.dumps(read_lens(paths["lens"]).to_json(), indent=1, ensure_ascii=False) + "\n"
        == paths["lens"].read_text()
    )
    assert (
        json.dumps(read_erasure(paths["erasure"]).to_json(), indent=1) + "\n" == paths["erasure"].read_text()
    )


def test_older_files_without_the_later_fields_load(tmp_path: Path) -> None:
    from casceq.mech.erasure_concepts import ErasureResult
    from casceq.stages.implicit import ImplicitResults

    # erasure results from before the gold labels, item ids, fitting items and per-clip answers were recorded
    old = {
        "kind": "erasure", "version": 1, "model": "m", "layers": [1], "positions": "all", "affine": False,
        "ctc_targets": "chars", "n_fit_utterances": 6,
        "accuracy": [{"task": "sst2", "condition": "none", "n": 4, "accuracy": 0.75, "same_as_none": 1.0}],
        "probes": [], "calibration": {}, "extra": {},
    }  # fmt: skip
    got = ErasureResult.from_json(old)
    assert got.gold == {} and got.items == {} and got.fit_items == [] and got.accuracy[0].correct == ()
    # implicit results from before the calibration offsets were recorded
    row = {
        "id": "e0",
        "gold": "a",
        "speech": "a",
        "cascade": "a",
        "implicit": "b",
        "transcript": "t",
        "lens_text": "l",
    }
    res = {
        "model": "m", "backbone": "b", "task": "sst2", "layer": 1, "mode": "score", "asr": "reference", "n": 1,
        "accuracy_speech": 1.0, "accuracy_cascade": 1.0, "accuracy_implicit": 0.0, "kappa_impl": None,
        "kappa_casc": None, "rows": [row],
    }  # fmt: skip
    back = ImplicitResults.from_json({"kind": "implicit", "version": 1, "results": [res]})
    assert back.results[0].offsets_speech is None and math.isnan(back.results[0].kappa_casc)


def test_report_sections_read_typed_results_old_and_new(tmp_path: Path) -> None:
    from casceq.report.mech import MechResults, lens_section, probe_section
    from casceq.report.mech_effects import erasure_section, implicit_section
    from casceq.report.tables import SourceBook

    erasure = _erasure_result().to_json()
    old = {k: v for k, v in erasure.items() if k not in ("gold", "items", "fit_items", "calibration")}
    old["accuracy"] = [{k: v for k, v in a.items() if k != "correct"} for a in old["accuracy"]]
    broken = {"kind": "erasure", "model": "x", "accuracy": [{"task": "sst2"}]}
    mech = MechResults(erasure=(("new.json", erasure), ("old.json", old), ("broken.json", broken)))
    section = erasure_section(mech, False, SourceBook({}))
    rows = [(r[2].text, r[4].text) for r in section.tables[0].rows]
    assert rows == [("none", "1.000"), ("text", "0.500")] * 2  # old and new files alike
    assert len(section.paragraphs) == 1 and "broken.json: malformed erasure results" in section.paragraphs[0]
    implicit = _implicit_results().to_json()
    implicit["results"][0]["kappa_impl"] = None  # an undefined kappa: printed as a missing number, no crash
    table = implicit_section(MechResults(implicit=(("i.json", implicit),)), SourceBook({})).tables[0]
    assert [c.text for c in table.rows[0]][4:6] == [section_fmt(math.nan), "0.250"]
    lens = lens_section(MechResults(lens=(("l.json", _lens_result().to_json()),)), False, SourceBook({}))
    assert [[c.text for c in r] for r in lens.tables[0].rows] == [
        ["0", "10", "0.200"],
        ["4", "0", section_fmt(None)],
    ]
    from casceq.mech.probes import LayerScore, ProbeResults

    scores = (LayerScore("energy", 0, 0.5, 3, 1, 30, 10, 64, 1.0),)
    probes = json.loads(ProbeResults("m", "f", "c", (0,), scores, 0, "utterance", 4, "t", "v").to_json())
    with_kind = {**probes, "kind": "probes"}  # the reader contract: "kind" optional
    t4 = probe_section(MechResults(probes=(("p.json", probes), ("q.json", with_kind))), False, SourceBook({}))
    assert [[c.text for c in t.rows[0]] for t in t4.tables] == [["0", "0.500"]] * 2


def section_fmt(x: Any) -> str:
    """How the report prints a missing number (``casceq.report.tables.fmt`` of NaN)."""
    from casceq.report.mech import num_or_nan
    from casceq.report.tables import fmt

    return fmt(num_or_nan(x))


def _run_folder(tmp_path: Path, fitted: list[str]) -> Path:
    """A run folder (config.json) whose calibration was fitted on the sst2 items ``fitted``."""
    from casceq.reproduce.plan import default_plan, experiment_toml
    from casceq.run.config import load_config

    tmp_path.mkdir(parents=True)
    (tmp_path / "e.toml").write_text(
        experiment_toml(default_plan(4, 4, tasks=["sst2"], conditions=["clean"]))
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": load_config(tmp_path / "e.toml").to_dict()}))
    (run / "calibration_items.json").write_text(json.dumps({"Speech-LLM": {"sst2": fitted}}))
    return run


@pytest.mark.parametrize("required", [True, False])
def test_context_items_refuse_the_runs_calibration_items(clips: Path, tmp_path: Path, required: bool) -> None:
    from casceq.errors import LeakageError
    from casceq.stages.context import ContextConfig, ItemsConfig, StageContext

    items = ItemsConfig(file=str(clips / "items.jsonl"))

    def context(fitted: list[str]) -> StageContext:
        run = _run_folder(tmp_path / "-".join(fitted or ["none"]), fitted)
        return StageContext(ContextConfig(model="hf:x", run_dir=str(run), run_required=required, items=items))

    with pytest.raises(LeakageError, match="sst2"):
        context(["e1", "e3"]).items("sst2")
    examples, audios = context(["other"]).items("sst2")  # positive control: disjoint items load
    assert [e.id for e in examples] == ["e0", "e1", "e2", "e3"] and len(audios) == 4
