"""casceq.audio.features: energy against direct numpy, F0 against tones of known frequency, alignment."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("parselmouth", reason="praat-parselmouth not installed")

from casceq.audio.features import align, extract, frame_energy, frame_times, position_spans
from casceq.audio.io import load_audio
from casceq.errors import InputError
from casceq.paths import datasets_dir

SR = 16_000


def harmonic(f0: float, seconds: float, n_harmonics: int = 6, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(amp / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, n_harmonics + 1))


def direct_energy_db(x: np.ndarray, centre_s: float, win_s: float) -> float:
    """Loop reference: mean square of the in-signal samples of the window centred at ``centre_s``."""
    width = round(win_s * SR)
    start = round(centre_s * SR) - width // 2
    seg = [x[i] for i in range(start, start + width) if 0 <= i < x.size]
    power = float(np.mean(np.square(seg))) if seg else 0.0
    return 10 * np.log10(max(power, 1e-10))


@pytest.mark.parametrize(
    ("hop", "win"), [(0.01, 0.025), (0.02, 0.02), (0.02, 0.05), (0.05, 0.1), (0.0125, 0.03)]
)
def test_energy_matches_a_direct_computation(hop: float, win: float) -> None:
    rng = np.random.default_rng(int(hop * 1e4))
    x = rng.standard_normal(12_345) * np.linspace(0.001, 1.0, 12_345)
    x[3000:4000] = 0.0  # a silent stretch hits the floor
    times = frame_times(x.size, SR, hop)
    assert times.size == int(np.ceil(x.size / (hop * SR)))
    np.testing.assert_allclose(np.diff(times), hop)
    assert times[0] == pytest.approx(hop / 2)
    got = frame_energy(x, SR, times, win)
    want = np.array([direct_energy_db(x, t, win) for t in times])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_energy_of_a_sine_is_its_rms_in_db() -> None:
    x = 0.5 * np.sin(2 * np.pi * 400 * np.arange(SR) / SR)
    f = extract(x, SR, hop_s=0.02, win_s=0.05)
    inner = f.energy_db[3:-3]
    np.testing.assert_allclose(inner, 20 * np.log10(0.5 / np.sqrt(2)), atol=0.05)


@pytest.mark.parametrize("f0", [110.0, 150.0, 220.0, 310.0])
@pytest.mark.parametrize("hop", [0.01, 0.02, 0.05])
def test_f0_of_harmonic_tones_within_2_percent(f0: float, hop: float) -> None:
    f = extract(harmonic(f0, 1.0), SR, hop_s=hop)
    assert f.voiced.mean() > 0.9
    assert np.nanmedian(f.f0_hz) == pytest.approx(f0, rel=0.02)
    assert np.all(np.abs(f.f0_hz[f.voiced] / f0 - 1) < 0.02)


def test_pure_sine_and_cc_tracker() -> None:
    x = 0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)
    for tracker in ("praat-ac", "praat-cc"):
        f = extract(x, SR, tracker=tracker)
        assert f.tracker == tracker and tracker in f.voicing_rule
        assert np.nanmedian(f.f0_hz) == pytest.approx(200, rel=0.02)


def test_noise_is_mostly_unvoiced_and_silence_is_unvoiced() -> None:
    rng = np.random.default_rng(0)
    f = extract(0.2 * rng.standard_normal(SR), SR)
    assert f.voiced.mean() < 0.1
    assert np.isnan(f.f0_hz[~f.voiced]).all()
    # Positive control: the same pipeline calls a tone voiced.
    assert extract(harmonic(150, 1.0), SR).voiced.mean() > 0.9


def test_frame_times_line_up_with_the_signal() -> None:
    # 0.5 s at 120 Hz, 0.3 s silence, 0.5 s at 240 Hz: each frame's F0 must belong to its own stretch.
    x = np.concatenate([harmonic(120, 0.5), np.zeros(int(0.3 * SR)), harmonic(240, 0.5)])
    f = extract(x, SR, hop_s=0.02)
    first = (f.times > 0.08) & (f.times < 0.42)
    gap = (f.times > 0.58) & (f.times < 0.72)
    last = (f.times > 0.88) & (f.times < 1.22)
    assert np.allclose(f.f0_hz[first], 120, rtol=0.02)
    assert not f.voiced[gap].any() and (f.energy_db[gap] == -100).all()
    assert np.allclose(f.f0_hz[last], 240, rtol=0.02)


def test_align_averages_power_and_voiced_f0_only() -> None:
    x = np.concatenate([harmonic(150, 0.4), np.zeros(int(0.4 * SR)), harmonic(200, 0.4)])
    f = extract(x, SR, hop_s=0.01)
    starts, ends = position_spans(60, hop_s=0.02)  # Whisper-like 50 Hz positions over the first 1.2 s
    a = align(f, starts, ends)
    assert a.tracker == f.tracker and a.voicing_rule == f.voicing_rule
    for p in range(60):
        inside = (f.times >= starts[p]) & (f.times < ends[p])
        assert a.n_frames[p] == inside.sum() == 2
        assert a.energy_db[p] == pytest.approx(10 * np.log10(np.mean(10 ** (f.energy_db[inside] / 10))))
        v = inside & f.voiced
        if v.any():
            assert a.f0_hz[p] == pytest.approx(np.mean(f.f0_hz[v]))
        else:
            assert np.isnan(a.f0_hz[p])
        assert a.voiced_fraction[p] == pytest.approx(v.sum() / 2)
    # A span partly voiced and partly silent: F0 from the voiced frames only (not dragged towards 0 or NaN).
    mixed = align(f, np.array([0.3]), np.array([0.5]))
    assert 0 < mixed.voiced_fraction[0] < 1
    assert mixed.f0_hz[0] == pytest.approx(150, rel=0.02)


def test_align_span_without_frame_uses_the_nearest_and_bad_spans_fail() -> None:
    f = extract(harmonic(150, 0.5), SR, hop_s=0.05)
    a = align(f, np.array([0.101]), np.array([0.102]))  # between centres 0.075 and 0.125
    assert a.n_frames[0] == 0
    assert a.energy_db[0] == pytest.approx(f.energy_db[2])
    with pytest.raises(InputError, match="ends >= starts"):
        align(f, np.array([0.2]), np.array([0.1]))


def test_too_short_for_the_tracker_is_unvoiced_not_a_crash() -> None:
    f = extract(harmonic(150, 0.02), SR)
    assert f.times.size == 1 and not f.voiced.any()


def test_real_speech_female_actor_higher_than_male() -> None:
    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        pytest.skip("shared datasets (ravdess) not found")
    medians = {}
    for actor in ("01", "02"):  # odd = male, even = female; same sentence and emotion
        wav = load_audio(root / "ravdess" / f"Actor_{actor}" / f"03-01-01-01-01-01-{actor}.flac")
        f = extract(wav, SR, hop_s=0.02)
        assert 0.1 < f.voiced.mean() < 0.9
        medians[actor] = np.nanmedian(f.f0_hz)
    assert 75 < medians["01"] < medians["02"] < 400
