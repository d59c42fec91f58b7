"""casceq.audio.natural: MELD and MUStARD official audio layouts, with real short MP4/WAV files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from casceq.audio.io import load_audio
from casceq.audio.natural import attach_audio, meld_stem
from casceq.errors import InputError
from casceq.paths import datasets_dir
from casceq.types import Example

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
SR = 16_000


@pytest.fixture(scope="module")
def source_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real speech clip (RAVDESS actor 3) as 16 kHz WAV, or a harmonic tone when the datasets are absent."""
    out = tmp_path_factory.mktemp("src") / "speech.wav"
    root = datasets_dir()
    clip = None if root is None else root / "ravdess" / "Actor_03" / "03-01-05-02-01-01-03.flac"
    if clip is not None and clip.is_file():
        wav = load_audio(clip)
    else:
        t = np.arange(SR) / SR
        wav = sum(0.2 / k * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 6)).astype(np.float32)
    sf.write(out, wav, SR)
    return out


def to_mp4(src: Path, dest: Path) -> Path:
    """A video file with an AAC audio track, as in the MELD/MUStARD releases."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=black:s=32x32:r=5", "-i", str(src)]
    subprocess.run([*cmd, "-shortest", "-c:v", "mpeg4", "-c:a", "aac", "-b:a", "96k", str(dest)], check=True)
    return dest


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    return float(np.dot(a[:n], b[:n]) / np.sqrt(np.dot(a[:n], a[:n]) * np.dot(b[:n], b[:n])))


def meld_example(d: int, u: int, **meta: object) -> Example:
    return Example(id=f"test_{d}_{u}", task="meld", text="Oh my God!", label="surprise", meta=meta)


def test_meld_layout(source_wav: Path, tmp_path: Path) -> None:
    folder = tmp_path / "MELD.Raw" / "output_repeated_splits_test"
    to_mp4(source_wav, folder / "dia0_utt0.mp4")
    shutil.copy(source_wav, folder / "dia0_utt1.wav")
    (folder / "._dia1_utt0.mp4").write_bytes(b"\0\5\26\7")  # macOS resource fork shipped in the archive
    examples = [
        meld_example(0, 0, Dialogue_ID=0, Utterance_ID=0),
        meld_example(0, 1, Dialogue_ID="0", Utterance_ID="1"),
        meld_example(1, 0, Dialogue_ID=1, Utterance_ID=0),
    ]
    found, missing = attach_audio(examples, folder, "meld")
    assert [e.id for e in found] == ["test_0_0", "test_0_1"] and missing == ("test_1_0",)
    assert Path(found[0].audio.path).name == "dia0_utt0.mp4" and found[0].audio.voice == "natural"
    assert found[0].text == examples[0].text and found[0].meta["Dialogue_ID"] == 0
    # The MP4's audio decodes (through ffmpeg) to the speech it was made from.
    ref = load_audio(source_wav)
    decoded = load_audio(found[0].audio.path)
    assert abs(decoded.size - ref.size) < 0.1 * SR
    assert similarity(decoded, ref) > 0.95
    np.testing.assert_allclose(load_audio(found[1].audio.path), ref, atol=1e-4)


def test_meld_stem_from_meta_or_id() -> None:
    assert meld_stem(meld_example(3, 7, dialogue_id=12, utterance_id=4)) == "dia12_utt4"
    assert meld_stem(meld_example(3, 7)) == "dia3_utt7"
    assert meld_stem(Example(id="meld/dia5_utt11", task="meld", text="", label="joy")) == "dia5_utt11"
    with pytest.raises(InputError, match="no Dialogue_ID"):
        meld_stem(Example(id="x", task="meld", text="", label="joy"))


def test_mustard_layout_and_check(source_wav: Path, tmp_path: Path) -> None:
    root = tmp_path / "mmsd_raw_data"
    utt = root / "utterances_final"
    to_mp4(source_wav, utt / "1_60.mp4")
    shutil.copy(source_wav, utt / "2_380.wav")
    (utt / "1_70.mp4").write_bytes(np.random.default_rng(0).bytes(3000))  # corrupt download
    examples = [
        Example(id=i, task="mustard", text="Yeah, right.", label="sarcastic")
        for i in ("1_60", "2_380", "1_70", "9_9")
    ]
    res = attach_audio(examples, root, "mustard")
    assert [e.id for e in res.examples] == ["1_60", "2_380", "1_70"] and res.missing == ("9_9",)
    assert res.reasons == {"9_9": "no file"}
    # Pointing at utterances_final itself works too; check=True decodes and moves the corrupt file to missing.
    checked = attach_audio(examples, utt, "mustard", check=True)
    assert [e.id for e in checked.examples] == ["1_60", "2_380"]
    assert checked.missing == ("1_70", "9_9")
    assert "1_70.mp4" in checked.reasons["1_70"] and "ffmpeg" in checked.reasons["1_70"]


def test_bad_layout_or_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="valid: meld, mustard"):
        attach_audio([], tmp_path, "iemocap")
    with pytest.raises(InputError, match="nowhere"):
        attach_audio([], tmp_path / "nowhere", "meld")
