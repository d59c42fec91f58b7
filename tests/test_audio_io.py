"""casceq.audio.io: reading, resampling, validation, atomic FLAC writing, and bad input."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from casceq.audio import io as aio
from casceq.errors import InputError, MissingDependency
from casceq.paths import datasets_dir

SR = 16_000


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spec)])


def ravdess_clip() -> Path:
    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        pytest.skip("shared datasets (ravdess) not found")
    return root / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.flac"


def test_flac_roundtrip_is_exact_to_16_bit(tmp_path: Path) -> None:
    x = tone(440, 0.5, SR)
    out = aio.write_flac(tmp_path / "sub" / "a.flac", x, SR)
    y = aio.load_audio(out)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1 / 32768 + 1e-7
    # Atomic: only the destination is left behind, and a second write replaces it.
    aio.write_flac(out, 0.5 * x, SR)
    assert [p.name for p in out.parent.iterdir()] == ["a.flac"]
    assert np.allclose(aio.load_audio(out), 0.5 * x, atol=1 / 32768 + 1e-7)


def test_write_flac_refuses_clipping_and_nan(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="clip"):
        aio.write_flac(tmp_path / "loud.flac", np.array([0.5, 1.5], dtype=np.float32), SR)
    with pytest.raises(InputError, match="NaN"):
        aio.write_flac(tmp_path / "nan.flac", np.array([0.1, np.nan], dtype=np.float32), SR)
    assert list(tmp_path.iterdir()) == []


def test_stereo_is_downmixed_by_averaging(tmp_path: Path) -> None:
    left, right = tone(300, 0.3, SR), tone(700, 0.3, SR, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    y = aio.load_audio(path)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)


def test_44k1_input_is_resampled_keeping_pitch_level_and_duration(tmp_path: Path) -> None:
    x = tone(1000, 1.0, 44_100)
    path = tmp_path / "cd.wav"
    sf.write(path, x, 44_100, subtype="FLOAT")
    y = aio.load_audio(path, sr=SR)
    assert y.size == int(np.ceil(x.size * SR / 44_100))
    assert dominant_freq(y, SR) == pytest.approx(1000, abs=2)
    mid = y[1000:-1000]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)


def test_resampling_removes_content_above_new_nyquist() -> None:
    # 12 kHz is above 8 kHz (Nyquist at 16 kHz): a correct anti-aliasing filter removes it, so no alias at 4 kHz.
    x = tone(12_000, 1.0, 44_100) + tone(1000, 1.0, 44_100)

    def alias_ratio(y: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
        freqs = np.fft.rfftfreq(y.size, 1 / SR)
        return float(spec[np.abs(freqs - 4000) < 20].max() / spec.max())

    assert alias_ratio(aio.resample(x, 44_100, SR)) < 1e-3
    # Positive control: naive interpolation without a filter folds the 12 kHz tone down to 4 kHz.
    t_new = np.arange(SR) / SR
    naive = np.interp(t_new, np.arange(x.size) / 44_100, x)
    assert alias_ratio(naive) > 0.1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_name_the_file(tmp_path: Path, bad: float) -> None:
    x = tone(200, 0.1, SR)
    x[37] = bad
    path = tmp_path / "broken.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with pytest.raises(InputError, match=r"broken\.wav.*NaN/inf.*sample 37"):
        aio.load_audio(path)


def test_empty_file_and_zero_frame_file_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.flac: empty audio file"):
        aio.load_audio(empty)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(InputError, match=r"zero\.wav: audio has no samples"):
        aio.load_audio(zero)
    with pytest.raises(InputError, match=r"nothere\.wav: audio file not found"):
        aio.load_audio(tmp_path / "nothere.wav")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_flac_names_the_file(tmp_path: Path, fraction: float) -> None:
    full = aio.write_flac(tmp_path / "full.flac", tone(180, 2.0, SR) + tone(2500, 2.0, SR, amp=0.1), SR)
    data = full.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert aio.load_audio(full).size == 2 * SR  # positive control: the intact file reads
    with pytest.raises(InputError, match=r"cut\.flac: .*truncated"):
        aio.load_audio(cut)


def test_real_truncated_ravdess_clip(tmp_path: Path) -> None:
    src = ravdess_clip()
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[:12_000])
    with pytest.raises(InputError, match=src.name):
        aio.load_audio(cut)


def test_is_silent_and_rms_db() -> None:
    assert aio.is_silent(np.zeros(1000, dtype=np.float32))
    assert aio.is_silent(tone(200, 0.1, SR, amp=10 ** (-95 / 20)))
    assert not aio.is_silent(tone(200, 0.1, SR, amp=10 ** (-60 / 20)))
    assert aio.rms_db(tone(200, 1.0, SR, amp=1.0)) == pytest.approx(-3.0103, abs=0.01)


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "blob.bin"
    payload = np.random.default_rng(0).bytes(3_000_001)
    p.write_bytes(payload)
    assert aio.file_sha256(p, chunk_size=4096) == hashlib.sha256(payload).hexdigest()


def test_validate_rejects_bad_shapes_and_names_the_source() -> None:
    with pytest.raises(InputError, match="ex-7: audio must be"):
        aio.validate(np.zeros((2, 2, 2)), "ex-7")
    assert aio.validate(np.ones((10, 2)), "x").shape == (10,)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mp4_decoded_through_ffmpeg(tmp_path: Path) -> None:
    x = tone(440, 1.0, 22_050)
    wav = tmp_path / "src.wav"
    sf.write(wav, x, 22_050)
    mp4 = tmp_path / "clip.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=black:s=32x32:r=5", "-i", str(wav)]
    subprocess.run([*cmd, "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(mp4)], check=True)
    y = aio.load_audio(mp4)
    assert abs(y.size - SR) < 0.1 * SR
    assert dominant_freq(y, SR) == pytest.approx(440, abs=3)
    video_only = tmp_path / "silent_film.mp4"
    subprocess.run([*cmd[:8], "-t", "1", "-c:v", "mpeg4", str(video_only)], check=True)
    with pytest.raises(InputError, match=r"silent_film\.mp4: no audio stream"):
        aio.load_audio(video_only)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(InputError, match=r"garbage\.mp4: ffmpeg cannot decode"):
        aio.load_audio(garbage)


def test_missing_ffmpeg_raises_missing_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "clip.m4a"
    p.write_bytes(b"\0" * 100)
    monkeypatch.setattr(aio.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependency, match="ffmpeg"):
        aio.load_audio(p)
