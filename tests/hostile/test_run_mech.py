"""Hostile inputs to `casceq run`, the model back ends and the mechanistic stages (issue 23).

Runs use stand-in ASR and LLM back ends (patched into the factories the runner calls) so that the runner,
store, config and outputs are the real code and each test takes a second or two; the OpenAI-compatible back end
talks to a local http.server that records what it receives and echoes the Authorization header in a 401 body.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from casceq.cli import main
from casceq.errors import CasceqError, InputError
from casceq.io.store import Store
from casceq.paths import datasets_dir
from casceq.run.config import load_config
from casceq.run.runner import run_experiment
from casceq.systems.base import Transcript
from casceq.types import INVALID

SECRET = "sk-HOSTILE-test-4f9a1c"
KEY_VAR = "CASCEQ_TEST_HOSTILE_KEY"

needs_data = pytest.mark.skipif(datasets_dir() is None, reason="../shared/datasets not found")


# --- stand-in back ends -------------------------------------------------------------------------------


class LengthASR:
    """Transcribes a clip as its length in samples: a prediction shows which file content it came from."""

    name = "length-asr"

    def transcribe(self, audios: Any) -> list[Transcript]:
        return [Transcript(f"clip of {len(a)} samples", 0.0) for a in audios]


class FirstOptionLLM:
    """Scores the first option highest (deterministic); generates a fixed answer."""

    backbone = "stand-in"

    def score_options(self, prompts: Any, options: Any) -> np.ndarray:
        return np.array([[0.0] + [-1.0] * (len(o) - 1) for o in options])

    def generate(self, prompts: Any, max_new_tokens: int) -> list[str]:
        return ["no idea"] * len(prompts)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    import casceq.systems.asr as asr_pkg
    import casceq.systems.llm as llm_pkg
    from casceq.run.build import clear_shared

    clear_shared()
    monkeypatch.setattr(asr_pkg, "make_asr", lambda spec, **k: LengthASR())
    monkeypatch.setattr(llm_pkg, "make_llm", lambda spec, **k: FirstOptionLLM())
    yield
    clear_shared()


def _text_config(tmp: Path, extra: str = "", system: str = "", top: str = "") -> Path:
    p = tmp / "text.toml"
    p.write_text(
        f"""
name = "h"
calibration = "none"
bootstrap = 20
{top}
[tasks.sst2]
n = 2
[[systems]]
name = "Text"
kind = "text"
llm = "stand-in"
{system}
{extra}
"""
    )
    return p


def _ravdess(tmp: Path, n: int = 4) -> tuple[Path, list[Path], list[Path]]:
    """A RAVDESS folder of ``n`` real clips; returns (config, copied files, original files)."""
    assert datasets_dir() is not None
    src = sorted((datasets_dir() / "ravdess" / "Actor_01").glob("*.flac"))[:n]
    data = tmp / "ravdess" / "Actor_01"
    data.mkdir(parents=True)
    for f in src:
        shutil.copyfile(f, data / f.name)
    p = tmp / "rav.toml"
    p.write_text(
        f"""
name = "h"
calibration = "none"
bootstrap = 20
conditions = ["clean"]
[tasks.ravdess]
data_dir = "{tmp / "ravdess"}"
[[systems]]
name = "Cascade"
kind = "cascade"
asr = "stand-in-asr"
llm = "stand-in"
"""
    )
    return p, sorted(data.iterdir()), src


def _rows(out: Path) -> dict[str, Any]:
    with Store(out / "store.sqlite") as s:
        return {p.example_id: p for p in s.predictions(run="h")}


# --- 1. API keys ---------------------------------------------------------------------------------------


class Recorder:
    """What a fake server received: one Authorization header (or None) per request."""

    def __init__(self) -> None:
        self.auth: list[str | None] = []
        self.lock = threading.Lock()


@pytest.fixture
def server() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 401, location: str | None = None) -> tuple[str, Recorder]:
        rec = Recorder()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization")
                with rec.lock:
                    rec.auth.append(auth)
                body = json.dumps({"error": {"message": f"Incorrect API key provided: {auth}"}}).encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1", rec

    yield start
    for s in servers:
        s.shutdown()


def _openai_config(tmp: Path, url: str, settings: str) -> Path:
    p = tmp / "o.toml"
    p.write_text(
        f"""
name = "h"
calibration = "none"
bootstrap = 20
answer_mode = "generate"
[tasks.sst2]
n = 2
[[systems]]
name = "O"
kind = "text"
llm = "openai:m@{url}"
settings = {{ {settings} }}
"""
    )
    return p


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@needs_data
def test_inline_api_key_is_refused_before_anything_is_written(tmp_path: Path, capsys: Any) -> None:
    cfg = _openai_config(tmp_path, "https://api.example.com/v1", f'api_key = "{SECRET}"')
    with pytest.raises(InputError, match=r"settings\.api_key.*api_key_env") as info:
        load_config(cfg)
    assert SECRET not in str(info.value)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()  # no config.json, no store: the key never reached the disk
    captured = capsys.readouterr()
    assert "api_key_env" in captured.err and SECRET not in captured.out + captured.err


@needs_data
def test_api_key_env_holding_the_key_itself_is_refused(tmp_path: Path) -> None:
    cfg = _openai_config(tmp_path, "https://api.example.com/v1", f'api_key_env = "{SECRET}"')
    with pytest.raises(InputError, match="NAME of an environment variable") as info:
        load_config(cfg)
    assert SECRET not in str(info.value)


@needs_data
def test_401_echoing_the_key_is_redacted_from_every_file_and_message(
    tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    url, rec = server(401)
    monkeypatch.setenv(KEY_VAR, SECRET)
    cfg = _openai_config(tmp_path, url, f'api_key_env = "{KEY_VAR}", allow_http = true')
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 1
    # positive control: the key was sent, and the server echoed it
    assert rec.auth and set(rec.auth) == {f"Bearer {SECRET}"}
    failure = json.loads((out / "failures.jsonl").read_text().splitlines()[0])
    assert "HTTP 401" in failure["error"] and "[redacted]" in failure["error"]
    assert SECRET.encode() not in _all_bytes(out)
    captured = capsys.readouterr()
    assert "HTTP 401" in captured.out + captured.err
    assert SECRET not in captured.out + captured.err


@needs_data
def test_default_key_is_not_sent_to_a_server_the_user_did_not_name_for_it(
    tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, rec = server(401)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = _openai_config(tmp_path, url, "")
    summary = run_experiment(load_config(cfg), tmp_path / "run", show_progress=False)
    assert rec.auth and set(rec.auth) == {None}  # the server was asked, without a key
    assert "HTTP 401" in summary.failed["O"]


def test_default_key_goes_only_to_the_official_https_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.llm.openai_http import OpenAIChatLLM

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert OpenAIChatLLM("m", "https://api.openai.com/v1")._headers()["Authorization"] == f"Bearer {SECRET}"
    for url in ("https://api.openai.com.evil.example/v1", "http://api.openai.com/v1", "https://x.example/v1"):
        assert "Authorization" not in OpenAIChatLLM("m", url)._headers(), url


def test_key_over_plain_http_needs_allow_http(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.llm.openai_http import OpenAIChatLLM

    url, rec = server(401)
    monkeypatch.setenv(KEY_VAR, SECRET)
    llm = OpenAIChatLLM("m", url, api_key_env=KEY_VAR, sleep=lambda s: None)
    with pytest.raises(InputError, match=r"plain http.*allow_http") as info:
        llm.generate(["x"], 2)
    assert rec.auth == [] and SECRET not in str(info.value)  # nothing left the process
    allowed = OpenAIChatLLM("m", url, api_key_env=KEY_VAR, allow_http=True, sleep=lambda s: None)
    with pytest.raises(CasceqError, match="HTTP 401") as info:
        allowed.generate(["x"], 2)
    assert rec.auth == [f"Bearer {SECRET}"] and SECRET not in str(info.value)


def test_a_redirect_does_not_carry_the_key_to_another_host(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casceq.systems.llm.openai_http import OpenAIChatLLM

    other_url, other = server(401)
    url, first = server(307, location=other_url + "/chat/completions")
    monkeypatch.setenv(KEY_VAR, SECRET)
    llm = OpenAIChatLLM("m", url, api_key_env=KEY_VAR, allow_http=True, max_retries=0, sleep=lambda s: None)
    with pytest.raises(CasceqError, match=r"HTTP 307.*not followed"):
        llm.generate(["x"], 2)
    assert first.auth == [f"Bearer {SECRET}"] and other.auth == []


def test_redact_masks_registered_keys_bearer_tokens_and_url_keys() -> None:
    from casceq.redact import redact, register_secret

    register_secret("my-own-secret-value")
    text = 'got "my-own-secret-value"; Authorization: Bearer abc.DEF-123; https://h/x?key=AIzaXYZ&alt=json'
    assert redact(text) == (
        'got "[redacted]"; Authorization: Bearer [redacted]; https://h/x?key=[redacted]&alt=json'
    )
    assert redact("an ordinary message") == "an ordinary message"


# --- 2 and 3. natural speech: content-keyed resume, input failures kept apart ------------------------------


@needs_data
def test_a_fixed_recording_is_predicted_again_on_resume(tmp_path: Path, stand_ins: None) -> None:
    cfg, files, originals = _ravdess(tmp_path)
    files[1].write_bytes(b"")  # 0-byte file
    out = tmp_path / "run"
    first = run_experiment(load_config(cfg), out, show_progress=False)
    assert files[1].stem not in _rows(out) and [g.failed for g in first.input_failures] == [1]
    shutil.copyfile(originals[1], files[1])  # the user fixes the file
    again = run_experiment(load_config(cfg), out, show_progress=False)
    assert sum(again.written.values()) == 1 and sum(again.skipped.values()) == 3
    assert again.input_failures == []
    from casceq.audio.io import load_audio

    row = _rows(out)[files[1].stem]
    assert (
        row.label != INVALID
        and row.transcript == f"clip of {len(load_audio(originals[1], sr=16000))} samples"
    )


@needs_data
def test_a_replaced_recording_is_keyed_by_content_not_path(tmp_path: Path, stand_ins: None) -> None:
    from casceq.audio.io import load_audio

    cfg, files, originals = _ravdess(tmp_path)
    out = tmp_path / "run"
    run_experiment(load_config(cfg), out, show_progress=False)
    shutil.copyfile(originals[3], files[0])  # same path, other content
    again = run_experiment(load_config(cfg), out, show_progress=False)
    assert sum(again.written.values()) == 1
    expected = f"clip of {len(load_audio(originals[3], sr=16000))} samples"
    assert _rows(out)[files[0].stem].transcript == expected


@needs_data
def test_unusable_audio_is_an_input_failure_kept_out_of_the_statistics(
    tmp_path: Path, stand_ins: None, capsys: Any
) -> None:
    cfg, files, originals = _ravdess(tmp_path)
    files[1].write_bytes(files[1].read_bytes()[:200])  # truncated FLAC
    files[2].write_bytes(b"")  # 0-byte
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Cascade · ravdess · clean: 2 of 4 unusable" in err and files[2].name in err
    rows = _rows(out)
    assert set(rows) == {files[0].stem, files[3].stem}  # no "[casceq error]" rows
    assert all(not r.output.startswith("[casceq error]") for r in rows.values())
    with Store(out / "store.sqlite") as s:
        failures = s.input_failures(run="h")
    assert {f.example_id for f in failures} == {files[1].stem, files[2].stem}
    data = json.loads((out / "compare.json").read_text())
    ((acc,),) = [[a for a in data["accuracy"] if a["system"] == "Cascade"]]
    assert acc["n"] == 2  # the statistics see only the usable examples
    (group,) = data["input_failures"]
    assert (group["system"], group["condition"], group["failed"], group["total"]) == (
        "Cascade",
        "clean",
        2,
        4,
    )
    assert "Input failures (not scored)" in (out / "report.md").read_text()
    # a stated share is allowed; the failures are retried (and still fail) on this start
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--max-input-failures", "0.5"]) == 0
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--max-input-failures", "0.49"]) == 1
    for i in (1, 2):
        shutil.copyfile(originals[i], files[i])
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert len(_rows(out)) == 4
    with Store(out / "store.sqlite") as s:
        assert s.input_failures(run="h") == []
    assert json.loads((out / "compare.json").read_text())["input_failures"] == []


@needs_data
def test_a_stale_error_row_of_an_older_version_is_removed(tmp_path: Path, stand_ins: None) -> None:
    from casceq.types import Prediction

    cfg, files, _ = _ravdess(tmp_path)
    files[0].write_bytes(b"")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"hash": load_config(cfg).hash(), "config": {}}))
    old = Prediction("Cascade", "ravdess", "clean", files[0].stem, "[casceq error] empty", INVALID, "neutral")
    with Store(out / "store.sqlite") as s:
        s.write_batch("h", [old], ["old-path-key"])
    run_experiment(load_config(cfg), out, show_progress=False)
    assert files[0].stem not in _rows(out) and len(_rows(out)) == 3


# --- 4. --out, batch_size, voices -------------------------------------------------------------------------


@needs_data
def test_run_into_a_users_folder_is_refused_and_leaves_it_alone(tmp_path: Path, stand_ins: None) -> None:
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "report.md").write_text("my notes\n")
    (user / "compare.json").write_text("{}")
    with pytest.raises(CasceqError, match="not empty and is not a casceq run folder"):
        run_experiment(load_config(_text_config(tmp_path)), user, show_progress=False)
    assert (user / "report.md").read_text() == "my notes\n" and (user / "compare.json").read_text() == "{}"
    assert sorted(p.name for p in user.iterdir()) == ["compare.json", "report.md"]
    # a run folder is still resumed (positive control), and an empty folder is fine
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_experiment(load_config(_text_config(tmp_path)), run_dir, show_progress=False)
    again = run_experiment(load_config(_text_config(tmp_path)), run_dir, show_progress=False)
    assert sum(again.written.values()) == 0 and sum(again.skipped.values()) == 2


@needs_data
def test_a_folder_with_a_foreign_config_json_is_refused(tmp_path: Path, stand_ins: None) -> None:
    for text in ('{"name": "my app"}', "not json at all"):
        folder = tmp_path / f"f{len(text)}"
        folder.mkdir()
        (folder / "config.json").write_text(text)
        with pytest.raises(CasceqError, match="not a casceq run's config"):
            run_experiment(load_config(_text_config(tmp_path)), folder, show_progress=False)
        assert (folder / "config.json").read_text() == text


@needs_data
def test_run_out_naming_a_file_is_a_clear_error(tmp_path: Path, stand_ins: None, capsys: Any) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["run", str(_text_config(tmp_path)), "--out", str(afile), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep me"


@needs_data
@pytest.mark.parametrize("value", [0, -3])
def test_batch_size_below_one_is_refused(tmp_path: Path, value: int) -> None:
    with pytest.raises(InputError, match=f"batch_size must be >= 1, got {value}"):
        load_config(_text_config(tmp_path, top=f"batch_size = {value}"))
    assert load_config(_text_config(tmp_path, top="batch_size = 1")).batch_size == 1


@needs_data
def test_unknown_voice_is_refused_even_in_a_text_only_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown voice 'espeak-en-us'; known voices: .*espeak-us"):
        load_config(_text_config(tmp_path, top='voices = ["espeak-en-us"]'))
    assert load_config(_text_config(tmp_path, top='voices = ["espeak-us"]')).voices == ("espeak-us",)


# --- 5. probes and capture --------------------------------------------------------------------------------

SR = 16_000


def _clip(path: Path, seconds: float, f0: float | None, seed: int) -> None:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wav = (
        np.zeros_like(t)
        if f0 is None
        else 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
    )
    sf.write(path, wav.astype(np.float32), SR)


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.tiny_models import tiny_whisper

    return tiny_whisper(tmp_path_factory.mktemp("w") / "whisper")


def _capture_args(folder: Path, audio: Path, out: Path, pitch: bool) -> list[str]:
    args = ["capture", "--model", f"whisper:{folder}", "--audio-dir", str(audio), "--layers", "0", "1"]
    return [*args, "--out", str(out), "--shard-positions", "20", *([] if pitch else ["--no-pitch"])]


def test_pitch_probe_skips_a_silent_clip_and_counts_it(tiny_whisper_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("parselmouth")
    from casceq.mech.probes import VOICED_MIN, run_probes
    from casceq.mech.shards import CaptureReader

    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(8):
        _clip(audio / f"u{i}.wav", 0.6, None if i == 3 else 120.0 + 15 * i, seed=i)
    out = tmp_path / "cap"
    assert main(_capture_args(tiny_whisper_dir, audio, out, pitch=True)) == 0
    res = run_probes(out, ["pitch"])
    # independent count of the rows the probe may use: voiced positions with a finite, positive F0
    reader = CaptureReader(out)
    voiced_rows, silent = 0, 0
    for block in reader.iter_layer(0):
        for rec in block.records:
            fr = block.frames[block.rows(rec)]
            ok = (fr[:, 4] >= VOICED_MIN) & np.isfinite(fr[:, 3]) & (fr[:, 3] > 0)
            voiced_rows += int(ok.sum())
            silent += not ok.any()
    assert silent == 1
    for s in res.scores:
        assert s.n_skipped_utterances == 1 and "1 utterances without a voiced position skipped" in s.warning
        assert s.n_train_rows + s.n_test_rows == voiced_rows


def _strict_loads(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_undefined_probe_scores_are_null_with_a_reason_in_strict_json(tmp_path: Path) -> None:
    from casceq.mech.probes import ProbeResults, run_probes
    from casceq.mech.shards import CaptureMeta, ShardWriter, UtteranceRecord

    rng = np.random.default_rng(0)
    meta = CaptureMeta("synthetic", "toy", "0" * 64, (0,), 1, 8, 0.02, None, "float32", "synthetic", "rule")
    with ShardWriter(tmp_path / "cap", meta) as writer:
        for i in range(10):
            p = 6
            frames = np.stack(
                [
                    np.arange(p) * 0.02,
                    np.arange(1, p + 1) * 0.02,
                    rng.normal(-30, 5, p),
                    np.full(p, np.nan),
                    np.zeros(p),
                ],
                axis=1,
            )  # no voiced position anywhere: the pitch probe has no rows at all
            writer.add(
                UtteranceRecord(f"u{i}", "a b", "", p * 0.02, False, 0, 0, 0, {}),
                rng.normal(size=(1, p, 8)).astype(np.float32),
                frames,
            )
    res = run_probes(tmp_path / "cap", ["energy", "pitch"])
    assert np.isnan(res.score("pitch", 0)) and np.isfinite(res.score("energy", 0))
    out = tmp_path / "res"
    assert main(["probe", str(tmp_path / "cap"), "--probes", "energy", "pitch", "--out", str(out)]) == 0
    data = _strict_loads((out / "probes.json").read_text())
    (pitch,) = [s for s in data["scores"] if s["probe"] == "pitch"]
    assert pitch["score"] is None and "not enough positions" in pitch["warning"]
    back = ProbeResults.from_json((out / "probes.json").read_text())
    assert np.isnan(back.score("pitch", 0)) and back.score("energy", 0) == res.score("energy", 0)


def test_a_failed_capture_reruns_without_force_after_the_input_is_fixed(
    tiny_whisper_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    from casceq.mech.shards import CaptureReader

    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(4):
        _clip(audio / f"u{i}.wav", 0.5, 150.0, seed=i)
    good = (audio / "u2.wav").read_bytes()
    (audio / "u2.wav").write_bytes(b"")  # 0-byte: the capture stops with a clear error
    out = tmp_path / "cap"
    args = _capture_args(tiny_whisper_dir, audio, out, pitch=False)
    assert main(args) == 2
    assert "u2.wav" in capsys.readouterr().err
    assert not (out / "capture.json").exists()  # a failed attempt is not a capture
    with pytest.raises(InputError, match="unfinished capture"):
        CaptureReader(out)
    (audio / "u2.wav").write_bytes(good)
    assert main(args) == 0  # same command, no --force
    reader = CaptureReader(out)
    ids = [r.id for r in reader.utterances]
    assert sorted(ids) == ["u0", "u1", "u2", "u3"] and len(ids) == len(set(ids))
    assert (out / "capture.json").exists() and not (out / "capture.partial.json").exists()
    assert main(args) == 2  # a finished capture still needs --resume or --force


@needs_data
def test_a_run_where_every_input_fails_says_so(tmp_path: Path, stand_ins: None, capsys: Any) -> None:
    cfg, files, _ = _ravdess(tmp_path, n=2)
    for f in files:
        f.write_bytes(b"")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--max-input-failures", "0.99"]) == 1
    assert "Cascade · ravdess · clean: 2 of 2 unusable" in capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "No predictions were written." in report and "| Cascade | ravdess | clean | 2 | 2 |" in report


@needs_data
def test_a_model_answering_nonsense_stays_an_invalid_prediction(tmp_path: Path, stand_ins: None) -> None:
    cfg, _, _ = _ravdess(tmp_path, n=2)
    cfg.write_text(cfg.read_text().replace("bootstrap = 20", 'bootstrap = 20\nanswer_mode = "generate"'))
    summary = run_experiment(load_config(cfg), tmp_path / "run", show_progress=False)
    rows = _rows(tmp_path / "run")
    assert len(rows) == 2 and all(r.label == INVALID and r.output == "no idea" for r in rows.values())
    assert summary.input_failures == [] and not summary.failed


# --- names are text in the run's progress display ---------------------------------------------------------


def test_a_system_name_with_rich_markup_runs_with_progress_shown(tmp_path: Path, stand_ins: None) -> None:
    """The progress bar prints system names; ``sys[/]`` raised rich's MarkupError before ``markup=False``."""
    cfg = _text_config(tmp_path).read_text().replace('name = "Text"', 'name = "sys[/]"')
    path = tmp_path / "markup.toml"
    path.write_text(cfg)
    out = tmp_path / "run"
    summary = run_experiment(load_config(path), out, show_progress=True)
    assert summary.failed == {} and summary.written == {"sys[/]": 2}
