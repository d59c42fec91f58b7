"""Recorded speech in the Hugging Face audiofolder layout as a user task: any rate and channel count."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import soundfile as sf

import casceq.tasks as tasks
from casceq.audio.check import check_audio
from casceq.audio.io import SAMPLE_RATE, load_audio
from casceq.errors import InputError

pytestmark = pytest.mark.usefixtures("clean_task_registry")


def _tone(sr: int, seconds: float, freq: float, channels: int) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    mono = 0.3 * np.sin(2 * np.pi * freq * t)
    return mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)


def _folder(tmp_path, metadata: str = "csv"):
    root = tmp_path / "calls"
    (root / "clips").mkdir(parents=True)
    sf.write(root / "clips" / "a1.wav", _tone(44_100, 1.5, 440.0, 2), 44_100)  # 44.1 kHz stereo
    sf.write(root / "clips" / "b2.wav", _tone(8_000, 0.75, 300.0, 1), 8_000)  # 8 kHz mono
    rows = [
        ("clips/a1.wav", "I have been waiting for an hour", "anger"),
        ("clips/b2.wav", "thanks a lot", "joy"),
    ]
    if metadata == "csv":
        body = "file_name,text,label\n" + "".join(f"{f},{t},{lab}\n" for f, t, lab in rows)
        (root / "metadata.csv").write_text(body)
    else:
        lines = [json.dumps({"file_name": f, "text": t, "label": lab}) for f, t, lab in rows]
        (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    tf = tmp_path / "tasks.toml"
    tf.write_text(
        textwrap.dedent(
            """
            [tasks.calls]
            labels = ["neutral", "anger", "joy"]
            text_sufficient = false
            [tasks.calls.data]
            audiofolder = "calls"
            """
        )
    )
    return tf, root


@pytest.mark.parametrize("metadata", ["csv", "jsonl"])
def test_audiofolder_any_rate_and_channels_resampled_and_checked(tmp_path, metadata):
    tf, _root = _folder(tmp_path, metadata)
    tasks.register_tasks_file(tf)
    examples = tasks.load_examples("calls")
    assert [(e.id, e.label, e.text) for e in examples] == [
        ("clips/a1", "anger", "I have been waiting for an hour"),
        ("clips/b2", "joy", "thanks a lot"),
    ]
    assert [e.audio.sample_rate for e in examples] == [44_100, 8_000]  # the files' own rates, from the header
    assert all(e.audio.voice == "natural" for e in examples)
    checks = check_audio(examples)
    assert [c.seconds for c in checks] == [pytest.approx(1.5, abs=1e-3), pytest.approx(0.75, abs=1e-3)]
    wav = load_audio(examples[0].audio.path)
    assert wav.ndim == 1 and len(wav) == int(1.5 * SAMPLE_RATE)
    # Downmixed (mean of channels: 0.75 of the left) and resampled: the 440 Hz tone survives at 16 kHz.
    spectrum = np.abs(np.fft.rfft(wav))
    assert np.fft.rfftfreq(len(wav), 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)
    assert float(np.max(np.abs(wav))) == pytest.approx(0.3 * 0.75, rel=0.02)


def test_audiofolder_bad_rows_and_files_are_named(tmp_path):
    tf, root = _folder(tmp_path)
    meta = root / "metadata.csv"
    tasks.register_tasks_file(tf)
    meta.write_text(meta.read_text() + "clips/missing.wav,hello,joy\n")
    with pytest.raises(InputError, match=r"metadata\.csv:4: audio file 'clips/missing.wav' not found"):
        tasks.load_examples("calls")
    meta.write_text("file_name,text,label\n../outside.wav,hello,joy\n")
    with pytest.raises(InputError, match="outside the audiofolder"):
        tasks.load_examples("calls")
    (root / "clips" / "bad.wav").write_bytes(b"RIFF not really audio")
    meta.write_text("file_name,text,label\nclips/bad.wav,hello,joy\n")
    (bad,) = tasks.load_examples("calls")
    with pytest.raises(InputError, match="example 'clips/bad'"):
        check_audio([bad])
    meta.unlink()
    with pytest.raises(InputError, match=r"exactly one of metadata\.csv, metadata\.jsonl"):
        tasks.load_examples("calls")
