import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from casceq.audio import synth as synth_mod
from casceq.audio.synth import (
    MANIFEST_NAME,
    SUMMARY_NAME,
    Manifest,
    synthesize_examples,
    synthesize_task,
)
from casceq.audio.tts import TTSError, get_voice
from casceq.audio.tts.manifest import remove_stale_temp_files
from casceq.cli import main
from casceq.errors import InputError
from casceq.paths import datasets_dir
from casceq.types import Example

FAST = ["flite-slt", "espeak-us"]  # fast offline engines: the batch logic is what is under test here


@pytest.fixture(autouse=True)
def _need_fast_voices():
    for v in FAST:
        if not get_voice(v).available():
            pytest.skip(f"{v} not available here")


def _examples():
    return [
        Example("a-1", "sst2", "it 's a charming journey .", "positive"),
        Example("b/2", "sst2", "a dull , dull film .", "negative"),
        Example("c 3", "sst2", " ... ", "negative"),  # nothing speakable
    ]


class CountingSynth:
    """Wraps the real synthesize of every voice; counts calls, optionally fails on chosen texts."""

    def __init__(self, monkeypatch, fail_on=(), interrupt_after=None):
        self.calls = 0
        self.fail_on = fail_on
        self.interrupt_after = interrupt_after
        for name in FAST:
            backend = get_voice(name)
            monkeypatch.setattr(backend, "synthesize", self._wrap(backend.synthesize))

    def _wrap(self, real):
        def synthesize(text, seed=0):
            self.calls += 1
            if self.interrupt_after is not None and self.calls > self.interrupt_after:
                raise KeyboardInterrupt
            if any(f in text for f in self.fail_on):
                raise TTSError("engine exploded on this text")
            return real(text, seed)

        return synthesize


def test_files_manifest_and_empty_text_skip(tmp_path):
    m = synthesize_examples(_examples(), FAST, tmp_path)
    assert len(m.entries) == 4
    assert [(s.example_id, s.voice) for s in m.skips] == [("c 3", "flite-slt"), ("c 3", "espeak-us")]
    assert all("empty" in s.reason for s in m.skips)
    for e in m.entries:
        path = tmp_path / e.path
        assert not os.path.isabs(e.path) and path.exists()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.format) == (16_000, 1, "FLAC")
        assert e.duration == pytest.approx(info.frames / 16_000, abs=1e-3)
        assert e.sample_rate == 16_000 and e.task == "sst2"
        assert e.spoken_text in ("it's a charming journey.", "a dull, dull film.")
        assert e.text in (_examples()[0].text, _examples()[1].text)
        assert e.path.endswith(".flac") and e.voice in e.path
    # the files on disk are the manifest's (JSONL, every field named in the brief)
    rows = [json.loads(line) for line in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert {tuple(sorted(r)) for r in rows} == {
        ("duration", "example_id", "path", "sample_rate", "sha256", "spoken_text", "task", "text", "voice")
    }
    summary = json.loads((tmp_path / SUMMARY_NAME).read_text())
    assert summary["n_files"] == 4 and len(summary["skips"]) == 2
    assert Manifest.load(tmp_path) == m
    ref = m.audio("a-1", "flite-slt")
    assert ref is not None and ref.sample_rate == 16_000 and os.path.isabs(ref.path)
    assert [e.id for e in m.with_audio(_examples(), "espeak-us")] == ["a-1", "b/2"]


def test_rerun_synthesises_nothing_and_is_identical(tmp_path, monkeypatch):
    first = synthesize_examples(_examples(), FAST, tmp_path)
    mtimes = {e.path: (tmp_path / e.path).stat().st_mtime_ns for e in first.entries}
    counter = CountingSynth(monkeypatch)
    second = synthesize_examples(_examples(), FAST, tmp_path)
    assert counter.calls == 0
    assert second.entries == first.entries
    assert {e.path: (tmp_path / e.path).stat().st_mtime_ns for e in second.entries} == mtimes


def test_deterministic_across_output_folders(tmp_path):
    a = synthesize_examples(_examples()[:1], FAST, tmp_path / "a")
    b = synthesize_examples(_examples()[:1], FAST, tmp_path / "b")
    assert [e.sha256 for e in a.entries] == [e.sha256 for e in b.entries]


def test_one_failing_item_is_recorded_and_the_batch_continues(tmp_path, monkeypatch):
    CountingSynth(monkeypatch, fail_on=("dull",))
    m = synthesize_examples(_examples(), FAST, tmp_path, jobs=2)
    assert sorted(e.example_id for e in m.entries) == ["a-1", "a-1"]
    failed = [s for s in m.skips if s.example_id == "b/2"]
    assert len(failed) == 2 and all("exploded" in s.reason for s in failed)


def test_real_engine_failure_is_a_skip(tmp_path, monkeypatch):
    backend = get_voice("espeak-us")
    bad = backend.info.__class__(**{**backend.info.__dict__, "settings": (("voice", "xx-none"),)})
    monkeypatch.setattr(backend, "info", bad)
    m = synthesize_examples(_examples()[:1], ["espeak-us"], tmp_path)
    assert not m.entries and "espeak-ng failed" in m.skips[0].reason


def test_killed_run_keeps_finished_work_and_resumes(tmp_path, monkeypatch):
    examples = [Example(f"e{i}", "sst2", f"sentence number {i} is here .", "positive") for i in range(4)]
    monkeypatch.setattr(synth_mod, "CHECKPOINT_EVERY", 1)
    counter = CountingSynth(monkeypatch, interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        synthesize_examples(examples, FAST, tmp_path)  # one thread: items run in order
    partial = Manifest.load(tmp_path)
    assert len(partial.entries) == 3
    flacs = sorted(p for p in tmp_path.rglob("*") if p.is_file() and "audio" in p.parts)
    assert len(flacs) == 3 and not [p for p in flacs if p.name.endswith(".tmp")]
    for p in flacs:
        sf.read(str(p))  # every file that has a final name is complete
    monkeypatch.undo()
    counter = CountingSynth(monkeypatch)
    done = synthesize_examples(examples, FAST, tmp_path)
    assert counter.calls == 8 - 3
    assert len(done.entries) == 8


def test_corrupt_file_is_resynthesised(tmp_path):
    m = synthesize_examples(_examples()[:1], ["flite-slt"], tmp_path)
    path = tmp_path / m.entries[0].path
    path.write_bytes(b"not a flac")
    again = synthesize_examples(_examples()[:1], ["flite-slt"], tmp_path)
    assert again.entries == m.entries
    sf.read(str(path))


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    folder = tmp_path / "audio" / "sst2" / "flite-slt"
    folder.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = folder / f".x-abc.flac.{proc.pid}.1.tmp"
    alive = folder / f".y-abc.flac.{os.getpid()}.1.tmp"  # positive control: a running writer's file stays
    dead.write_bytes(b"partial")
    alive.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path) == 1
    assert not dead.exists() and alive.exists()


def test_voices_added_later_are_merged(tmp_path):
    synthesize_examples(_examples()[:2], ["flite-slt"], tmp_path)
    m = synthesize_examples(_examples()[:2], ["espeak-us"], tmp_path)
    assert sorted({e.voice for e in m.entries}) == ["espeak-us", "flite-slt"]
    assert len(m.entries) == 4


def test_bad_requests(tmp_path):
    with pytest.raises(InputError, match="unknown voice"):
        synthesize_examples(_examples(), ["nope"], tmp_path)
    with pytest.raises(InputError, match="repeated"):
        synthesize_examples(_examples(), ["flite-slt", "flite-slt"], tmp_path)
    dup = [_examples()[0], _examples()[0]]
    with pytest.raises(InputError, match="duplicate"):
        synthesize_examples(dup, ["flite-slt"], tmp_path)


def test_synthesize_task_uses_the_runs_subsample(tmp_path):
    if datasets_dir() is None:
        pytest.skip("shared datasets not found")
    from casceq.tasks import load_examples

    m = synthesize_task("sst2", 3, ["flite-slt"], tmp_path, seed=1)
    assert sorted(e.example_id for e in m.entries) == sorted(e.id for e in load_examples("sst2", n=3, seed=1))
    assert m.request["task"] == "sst2" and m.request["n"] == 3


def test_cli_list_voices(capsys):
    assert main(["synth", "--list-voices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["voices"]
    by = {r["name"]: r for r in rows}
    assert by["flite-slt"]["available"] and by["flite-slt"]["sex"] == "female"
    assert by["edge-aria"]["offline"] is False
    assert main(["synth", "--list-voices"]) == 0
    assert "festival-slt-hts" in capsys.readouterr().out


def test_cli_synth_and_errors(tmp_path, capsys):
    if datasets_dir() is None:
        pytest.skip("shared datasets not found")
    out = tmp_path / "o"
    assert main(["synth", "--task", "sst2", "--n", "2", "--voices", "flite-slt", "--out", str(out)]) == 0
    assert len(Manifest.load(out).entries) == 2
    assert main(["synth", "--task", "sst2", "--n", "2", "--voices", "nope", "--out", str(out)]) == 2
    assert "unknown voice" in capsys.readouterr().err


def test_command_module_imports_only_the_standard_library():
    code = "import sys, casceq.commands.synth; bad = {'numpy', 'scipy', 'soundfile'} & set(sys.modules); print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "set()"


def test_peak_normalised_audio_survives_flac_round_trip(tmp_path):
    m = synthesize_examples(_examples()[:1], ["flite-slt"], tmp_path)
    wav, _ = sf.read(str(tmp_path / m.entries[0].path), dtype="float32")
    direct, _ = get_voice("flite-slt").synthesize(m.entries[0].spoken_text)
    np.testing.assert_allclose(wav, direct, atol=1 / 32767 + 1e-6)


def test_spoken_items_of_a_smaller_request_on_a_shared_folder(tmp_path):
    # A folder's manifest lists every earlier request; items are only those asked for now (it used to raise
    # KeyError on the extra entries, breaking a second, smaller run on the same audio folder).
    from casceq.run.items import spoken_items

    exs = _examples()[:2]
    both = spoken_items(exs, FAST, tmp_path)
    assert sorted(it.example.id for it in both) == sorted(f"{e.id}@{v}" for e in exs for v in FAST)
    one = spoken_items(exs[:1], ["espeak-us"], tmp_path)
    assert [it.example.id for it in one] == ["a-1@espeak-us"]
    assert one[0].audio == next(it.audio for it in both if it.example.id == "a-1@espeak-us")
