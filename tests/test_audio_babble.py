"""Babble sources: real recordings (resampled, looped) and MUSAN-style talker babble (exclusion, levels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from casceq.audio.babble import RecordedBabble, TalkerBabble, ravdess_actor, speaker_key, trim_silence
from casceq.audio.io import is_silent, load_audio
from casceq.errors import InputError
from casceq.paths import datasets_dir

SR = 16_000
# One pure tone per synthetic "speaker", so the spectrum of the babble says who is in it.
TONES = {f"{a:02d}": 300.0 + 150.0 * a for a in range(1, 9)}


def shared(sub: str) -> Path:
    root = datasets_dir()
    if root is None or not (root / sub).is_dir():
        pytest.skip(f"shared datasets ({sub}) not found")
    return root / sub


@pytest.fixture(scope="module")
def tone_talkers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RAVDESS-named clips: actor AA speaks a tone at TONES[AA], at a different level per clip, padded by silence."""
    root = tmp_path_factory.mktemp("talkers")
    t = np.arange(int(0.4 * SR)) / SR
    pad = np.zeros(int(0.2 * SR))
    for actor, freq in TONES.items():
        folder = root / f"Actor_{actor}"
        folder.mkdir()
        for rep, amp in ((1, 0.02), (2, 0.5)):
            clip = np.concatenate([pad, amp * np.sin(2 * np.pi * freq * t), pad])
            sf.write(folder / f"03-01-01-01-01-{rep:02d}-{actor}.wav", clip, SR)
    return root


def tone_amplitudes(x: np.ndarray) -> dict[str, float]:
    spec = np.abs(np.fft.rfft(x)) * 2 / x.size
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return {a: float(spec[np.argmin(np.abs(freqs - f))]) for a, f in TONES.items()}


def test_speaker_ids() -> None:
    assert ravdess_actor("/x/Actor_07/03-01-05-02-01-02-07.flac") == "7"
    assert ravdess_actor("speech-librivox-0001.wav") is None
    assert speaker_key("07") == speaker_key(7) == "7"


def test_talker_babble_never_contains_the_target_and_levels_are_equal(tone_talkers: Path) -> None:
    src = TalkerBabble.from_folder(tone_talkers, n_talkers=(3, 7))
    assert sorted(src.files) == sorted(speaker_key(a) for a in TONES)
    n = SR  # 1 s: bins of 1 Hz, every tone on a bin
    for seed in range(12):
        target = list(TONES)[seed % len(TONES)]
        x = src.sample(n, np.random.default_rng(seed), exclude_speaker=target)
        amps = tone_amplitudes(x)
        present = [a for a, v in amps.items() if v > 0.05]
        assert target not in present
        assert 3 <= len(present) <= 7
        # Clips at 0.02 and 0.5 amplitude were level-normalised: present talkers have equal levels.
        levels = np.array([amps[a] for a in present])
        assert levels.max() / levels.min() < 1.5
    # Positive control: without exclusion the same speaker does appear in some draws.
    seen = set()
    for seed in range(12):
        amps = tone_amplitudes(src.sample(n, np.random.default_rng(seed)))
        seen |= {a for a, v in amps.items() if v > 0.05}
    assert seen == set(TONES)


def test_talker_streams_are_trimmed_so_a_single_talker_never_falls_silent(tone_talkers: Path) -> None:
    src = TalkerBabble.from_folder(tone_talkers, n_talkers=(1, 1))
    x = src.sample(3 * SR, np.random.default_rng(0))
    frames = x[: (x.size // 320) * 320].reshape(-1, 320)
    assert np.sqrt(np.mean(frames**2, axis=1)).min() > 0.3
    untrimmed = load_audio(next(tone_talkers.rglob("*.wav")))
    assert trim_silence(untrimmed, SR).size < 0.75 * untrimmed.size


def test_talker_babble_is_deterministic_and_errors_are_recorded(tone_talkers: Path, tmp_path: Path) -> None:
    src = TalkerBabble.from_folder(tone_talkers)
    a = src.sample(5000, np.random.default_rng(1), exclude_speaker="3")
    b = TalkerBabble.from_folder(tone_talkers).sample(5000, np.random.default_rng(1), exclude_speaker=3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="at least 3 talkers"):
        TalkerBabble({"1": [Path("a.wav")], "2": [Path("b.wav")], "3": [Path("c.wav")]}).sample(
            10, np.random.default_rng(0), exclude_speaker="1"
        )
    # A corrupt clip is skipped and recorded, the batch goes on.
    folder = tmp_path / "spk"
    folder.mkdir()
    good = {f"s{i}": [folder / f"s{i}.wav"] for i in range(3)}
    for i in range(3):
        sf.write(folder / f"s{i}.wav", 0.3 * np.sin(np.arange(SR) * (0.05 + 0.01 * i)), SR)
    bad = folder / "bad.flac"
    bad.write_bytes(b"not audio at all")
    src2 = TalkerBabble({**good, "s0": [folder / "s0.wav", bad]}, n_talkers=(3, 3))
    for seed in range(5):
        assert not is_silent(src2.sample(2 * SR, np.random.default_rng(seed)))
    assert str(bad) in src2.skipped and "bad.flac" in src2.skipped[str(bad)]


def test_recorded_babble_from_the_shared_recordings() -> None:
    folder = shared("babble")
    src = RecordedBabble.from_folder(folder)
    names = [f.name for f in src.files]
    assert len(names) == 3 and not any("ISTS" in n for n in names)
    sigs = src.signals()
    for f, sig in zip(src.files, sigs, strict=True):
        info = sf.info(f)
        assert abs(sig.size - info.frames * SR / info.samplerate) <= 1  # resampled to 16 kHz
        assert np.sqrt(np.mean(sig.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    # The 8 kHz (telephone) recording was upsampled properly: nothing above its 4 kHz Nyquist.
    tel = sigs[next(i for i, n in enumerate(names) if "8000Hz" in n)]
    spec = np.abs(np.fft.rfft(tel)) ** 2
    freqs = np.fft.rfftfreq(tel.size, 1 / SR)
    assert spec[freqs > 4200].sum() < 1e-3 * spec.sum()
    # Longer than any recording: looped, finite, deterministic for a given rng.
    x = src.sample(25 * SR, np.random.default_rng(5))
    assert x.shape == (25 * SR,) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, src.sample(25 * SR, np.random.default_rng(5)))
    assert len(src.fingerprint) == 64


def test_talker_babble_from_ravdess_excludes_the_actor() -> None:
    src = TalkerBabble.from_folder(shared("ravdess"))
    assert len(src.files) == 24
    x = src.sample(2 * SR, np.random.default_rng(0), exclude_speaker="01")
    assert x.shape == (2 * SR,) and not is_silent(x)
    assert not src.skipped
    used = {ravdess_actor(p) for p in src._cache}
    assert "1" not in used and 3 <= len(used) <= 7


def test_empty_folders_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no babble recordings"):
        RecordedBabble.from_folder(tmp_path)
    with pytest.raises(InputError, match=r"no \.flac/\.wav"):
        TalkerBabble.from_folder(tmp_path)
