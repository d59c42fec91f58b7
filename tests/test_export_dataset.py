"""Spoken test sets as a Hugging Face dataset on disk: the same examples and audio bytes come back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import casceq.tasks as tasks
from casceq.audio.io import file_sha256, write_flac
from casceq.audio.tts.manifest import Manifest, ManifestEntry
from casceq.errors import InputError

datasets = pytest.importorskip("datasets", reason="datasets (extra 'hub') is not installed")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "user_task"


@pytest.fixture(autouse=True)
def _intent3(clean_task_registry: None) -> None:
    tasks.register_tasks_file(EXAMPLES / "tasks.toml")


def _synth_folder(root: Path) -> Manifest:
    """A synthesis folder as ``casceq synth`` writes it (manifest.jsonl + FLAC clips), with tones for speech."""
    rng = np.random.default_rng(0)
    entries = []
    for ex in tasks.load_examples("intent3", n=3, seed=0):
        for voice in ("voice-a", "voice-b"):
            rel = f"intent3/{voice}/{ex.id}.flac"
            wav = (0.1 * rng.standard_normal(16_000 * 1)).astype(np.float32)
            path = write_flac(root / rel, wav)
            entries.append(
                ManifestEntry(
                    ex.id,
                    "intent3",
                    voice,
                    rel,
                    1.0,
                    16_000,
                    ex.text,
                    ex.text.capitalize(),
                    file_sha256(path),
                )
            )
    manifest = Manifest(root, tuple(entries))
    manifest.write()
    return manifest


def test_export_and_read_back_gives_the_same_examples_and_audio_bytes(tmp_path):
    from casceq.cli import main

    manifest = _synth_folder(tmp_path / "synth")
    out = tmp_path / "hf"
    assert main(["export-dataset", str(tmp_path / "synth"), "--out", str(out),
                 "--tasks-file", str(EXAMPLES / "tasks.toml")]) == 0  # fmt: skip
    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == ["audio", "text", "spoken_text", "label", "voice", "condition", "item", "task"]
    assert isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].sampling_rate == 16_000
    gold = {ex.id: ex for ex in tasks.load_examples("intent3")}
    assert len(ds) == len(manifest.entries) == 6
    for row, entry in zip(ds, manifest.entries, strict=True):
        assert row["audio"]["bytes"] == (tmp_path / "synth" / entry.path).read_bytes()
        assert (row["item"], row["voice"], row["task"], row["condition"]) == (
            entry.example_id,
            entry.voice,
            "intent3",
            "clean",
        )
        assert row["text"] == gold[row["item"]].text and row["label"] == gold[row["item"]].label
        assert row["spoken_text"] == entry.spoken_text


def test_export_refuses_missing_clips_and_non_empty_output(tmp_path):
    from casceq.audio.hf_dataset import export_hf_dataset

    manifest = _synth_folder(tmp_path / "synth")
    (tmp_path / "synth" / manifest.entries[0].path).unlink()
    with pytest.raises(InputError, match="is missing"):
        export_hf_dataset([tmp_path / "synth"], tmp_path / "hf")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        export_hf_dataset([tmp_path / "synth"], tmp_path / "full")
    with pytest.raises(InputError, match="no synthesised clips"):
        export_hf_dataset([tmp_path / "empty"], tmp_path / "hf2")


def test_synth_a_user_task_then_export_it(tmp_path):
    """``casceq synth --task <user task> --tasks-file F`` speaks the CSV's texts; export-dataset publishes them."""
    from casceq.audio.tts import get_voice
    from casceq.cli import main

    if not get_voice("espeak-us").available():
        pytest.skip("espeak-us not available here")
    tf = str(EXAMPLES / "tasks.toml")
    synth = tmp_path / "synth"
    assert main(["synth", "--task", "intent3", "--n", "3", "--voices", "espeak-us", "--out", str(synth),
                 "--tasks-file", tf]) == 0  # fmt: skip
    assert main(["export-dataset", str(synth), "--out", str(tmp_path / "hf"), "--tasks-file", tf]) == 0
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    chosen = {e.id: e for e in tasks.load_examples("intent3", n=3, seed=0)}
    assert sorted(ds["item"]) == sorted(chosen) and set(ds["voice"]) == {"espeak-us"}
    assert all(row["label"] == chosen[row["item"]].label for row in ds)
    assert all(row["audio"]["bytes"][:4] == b"fLaC" for row in ds)
