"""Frame-level acoustic features (energy, F0, voicing) at any frame rate, and alignment to model positions.

Probes ask "does layer L still encode energy / pitch?", so every hidden-state position needs a target. This
module computes features on frames centred at ``(i + 0.5) * hop_s`` (e.g. ``hop_s=0.02`` matches the Whisper
encoder's 50 positions per second) and :func:`align` averages them over arbitrary position spans.

- Energy: RMS of the samples inside the frame's window, in dBFS (floored at :data:`ENERGY_FLOOR_DB`).
- F0 and voicing: Praat's pitch tracker through parselmouth (``praat-parselmouth``), autocorrelation (``"praat-ac"``,
  the default) or cross-correlation (``"praat-cc"``), run at a step of ``min(hop_s, 10 ms)``. A frame is voiced
  when at least half of the tracker's frames inside its window are voiced; its F0 is their mean. The tracker
  and voicing rule are recorded in every result, because pitch-probe R² depends on them strongly.

parselmouth is imported only when pitch is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casceq.audio.io import SAMPLE_RATE
from casceq.errors import InputError, require

ENERGY_FLOOR_DB = -100.0
"""Energy of an all-zero frame (dBFS)."""

TRACKERS = ("praat-ac", "praat-cc")
"""Pitch trackers available through parselmouth."""


@dataclass(frozen=True)
class Features:
    """Frame-level features of one clip (T frames).

    Attributes:
        times: Frame centre times in seconds, shape ``(T,)``.
        energy_db: RMS energy in dBFS, shape ``(T,)``.
        f0_hz: Fundamental frequency in Hz, NaN where unvoiced, shape ``(T,)``.
        voiced: Voicing decision, bool, shape ``(T,)``.
        hop_s: Frame step in seconds.
        win_s: Analysis window in seconds (energy window; voicing is pooled over the same span).
        sample_rate: Sample rate of the analysed audio in Hz.
        tracker: Pitch tracker name (e.g. ``"praat-ac"``).
        voicing_rule: The voicing rule in words, with the tracker's thresholds.
    """

    times: np.ndarray
    energy_db: np.ndarray
    f0_hz: np.ndarray
    voiced: np.ndarray
    hop_s: float
    win_s: float
    sample_rate: int
    tracker: str
    voicing_rule: str


@dataclass(frozen=True)
class AlignedFeatures:
    """Features averaged over P position spans (see :func:`align`).

    Attributes:
        starts: Span start times in seconds, shape ``(P,)``.
        ends: Span end times in seconds, shape ``(P,)``.
        energy_db: dB of the mean *power* of the frames in each span, shape ``(P,)``.
        f0_hz: Mean F0 over the span's voiced frames, NaN if none, shape ``(P,)``.
        voiced_fraction: Fraction of the span's frames that are voiced, shape ``(P,)``.
        n_frames: Frames whose centre lies in the span, shape ``(P,)``; 0 means the nearest frame was used.
        tracker: Pitch tracker of the source features.
        voicing_rule: Voicing rule of the source features.
    """

    starts: np.ndarray
    ends: np.ndarray
    energy_db: np.ndarray
    f0_hz: np.ndarray
    voiced_fraction: np.ndarray
    n_frames: np.ndarray
    tracker: str
    voicing_rule: str


def frame_times(n_samples: int, sr: int, hop_s: float) -> np.ndarray:
    """Centre times ``(i + 0.5) * hop_s`` of the frames covering ``n_samples``; shape ``(ceil(n / hop),)``."""
    n_frames = max(1, int(np.ceil(n_samples / (hop_s * sr) - 1e-9)))
    return (np.arange(n_frames) + 0.5) * hop_s


def _window_bounds(times: np.ndarray, sr: int, win_s: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, round(win_s * sr))
    a = np.round(times * sr).astype(np.int64) - width // 2
    return np.clip(a, 0, n), np.clip(a + width, 0, n)


def frame_energy(wav: np.ndarray, sr: int, times: np.ndarray, win_s: float) -> np.ndarray:
    """RMS energy in dBFS of the window of ``win_s`` seconds centred at each time.

    Samples outside the signal are not counted (edge windows average only what exists).

    Args:
        wav: Samples, shape ``(n,)``.
        sr: Sample rate in Hz.
        times: Window centres in seconds, shape ``(T,)``.
        win_s: Window length in seconds.

    Returns:
        float64 array of shape ``(T,)``.
    """
    x = np.asarray(wav, dtype=np.float64)
    a, b = _window_bounds(times, sr, win_s, x.size)
    # A cumulative sum of squares gives every window's energy in O(n + T) whatever the overlap.
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    count = b - a
    power = np.where(count > 0, (csum[b] - csum[a]) / np.maximum(count, 1), 0.0)
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (ENERGY_FLOOR_DB / 10.0)))


def track_pitch(
    wav: np.ndarray,
    sr: int,
    times: np.ndarray,
    win_s: float,
    *,
    tracker: str = "praat-ac",
    f0_floor: float = 75.0,
    f0_ceiling: float = 600.0,
    voicing_threshold: float = 0.45,
    silence_threshold: float = 0.03,
) -> tuple[np.ndarray, np.ndarray, str]:
    """F0 and voicing at each time, pooled from a Praat pitch track over a window of ``win_s``.

    Args:
        wav: Samples, shape ``(n,)``.
        sr: Sample rate in Hz.
        times: Frame centres in seconds, shape ``(T,)``.
        win_s: Pooling window in seconds.
        tracker: ``"praat-ac"`` (autocorrelation) or ``"praat-cc"`` (cross-correlation).
        f0_floor: Lowest F0 searched (Hz); also sets Praat's analysis window (3 / f0_floor seconds).
        f0_ceiling: Highest F0 searched (Hz).
        voicing_threshold: Praat's voicing threshold (higher = fewer voiced frames).
        silence_threshold: Praat's silence threshold relative to the global peak.

    Returns:
        ``(f0_hz, voiced, voicing_rule)``: float64 ``(T,)`` with NaN where unvoiced, bool ``(T,)``, and text.
    """
    if tracker not in TRACKERS:
        raise InputError(f"unknown pitch tracker {tracker!r}; valid: {', '.join(TRACKERS)}")
    # praat-parselmouth is GPL-3.0 (as Praat is): an optional extra of its own, like the piper voice.
    parselmouth = require("parselmouth", "pitch tracking", package="praat-parselmouth", extra="pitch")
    step = min(float(np.median(np.diff(times))) if times.size > 1 else win_s, 0.01)
    rule = (
        f"{tracker} (Praat via parselmouth) step={step:g}s floor={f0_floor:g}Hz ceiling={f0_ceiling:g}Hz "
        f"voicing_threshold={voicing_threshold:g} silence_threshold={silence_threshold:g}; a frame is voiced "
        f"if >= 50% of tracker frames within +/-{win_s / 2:g}s are voiced; F0 = their mean"
    )
    sound = parselmouth.Sound(np.asarray(wav, dtype=np.float64), sampling_frequency=float(sr))
    method = sound.to_pitch_ac if tracker == "praat-ac" else sound.to_pitch_cc
    try:
        pitch = method(
            time_step=step,
            pitch_floor=f0_floor,
            pitch_ceiling=f0_ceiling,
            voicing_threshold=voicing_threshold,
            silence_threshold=silence_threshold,
        )
    except parselmouth.PraatError:
        # Shorter than Praat's analysis window (3 periods of f0_floor): nothing can be voiced.
        return np.full(times.shape, np.nan), np.zeros(times.shape, dtype=bool), rule
    ptimes = np.asarray(pitch.xs())
    if ptimes.size == 0:
        return np.full(times.shape, np.nan), np.zeros(times.shape, dtype=bool), rule
    pf0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    pvoiced = pf0 > 0
    lo = np.searchsorted(ptimes, times - win_s / 2, side="left")
    hi = np.searchsorted(ptimes, times + win_s / 2, side="right")
    empty = hi <= lo
    # A window narrower than the tracker step may hold no tracker frame: use the nearest one.
    nearest = np.clip(np.searchsorted(ptimes, times), 0, max(ptimes.size - 1, 0))
    lo = np.where(empty, nearest, lo)
    hi = np.where(empty, nearest + 1, hi)
    cv = np.concatenate([[0], np.cumsum(pvoiced)])
    cf = np.concatenate([[0.0], np.cumsum(np.where(pvoiced, pf0, 0.0))])
    n_voiced = cv[hi] - cv[lo]
    voiced = n_voiced * 2 >= (hi - lo)
    voiced &= n_voiced > 0
    f0 = np.where(voiced, (cf[hi] - cf[lo]) / np.maximum(n_voiced, 1), np.nan)
    return f0, voiced, rule


def extract(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    hop_s: float = 0.02,
    win_s: float | None = None,
    *,
    tracker: str = "praat-ac",
    f0_floor: float = 75.0,
    f0_ceiling: float = 600.0,
    voicing_threshold: float = 0.45,
) -> Features:
    """Energy, F0 and voicing of ``wav`` on frames every ``hop_s`` seconds.

    Args:
        wav: Samples, shape ``(n,)``.
        sr: Sample rate in Hz.
        hop_s: Frame step in seconds (0.02 = Whisper encoder positions).
        win_s: Analysis window in seconds; default ``max(hop_s, 0.025)``.
        tracker: Pitch tracker (see :data:`TRACKERS`).
        f0_floor: Lowest F0 searched in Hz.
        f0_ceiling: Highest F0 searched in Hz.
        voicing_threshold: Tracker voicing threshold.

    Returns:
        :class:`Features` with ``T = ceil(n / (hop_s * sr))`` frames.
    """
    if hop_s <= 0:
        raise InputError(f"hop_s must be positive, got {hop_s}")
    win = float(win_s) if win_s is not None else max(hop_s, 0.025)
    x = np.asarray(wav, dtype=np.float64)
    times = frame_times(x.size, sr, hop_s)
    energy = frame_energy(x, sr, times, win)
    f0, voiced, rule = track_pitch(
        x,
        sr,
        times,
        win,
        tracker=tracker,
        f0_floor=f0_floor,
        f0_ceiling=f0_ceiling,
        voicing_threshold=voicing_threshold,
    )
    return Features(times, energy, f0, voiced, float(hop_s), win, int(sr), tracker, rule)


def position_spans(
    n_positions: int, hop_s: float = 0.02, offset_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times of ``n_positions`` consecutive positions of ``hop_s`` seconds; two ``(P,)`` arrays."""
    starts = offset_s + np.arange(n_positions) * hop_s
    return starts, starts + hop_s


def align(features: Features, starts: np.ndarray, ends: np.ndarray) -> AlignedFeatures:
    """Average frame features over each position's time span ``[start, end)``.

    Energy is averaged as power (then converted to dB), so a half-silent span is not dragged to the floor by
    the log; F0 is averaged over voiced frames only. A span containing no frame centre takes the frame
    nearest to its midpoint (``n_frames`` is then 0).

    Args:
        features: Frame features from :func:`extract`.
        starts: Span starts in seconds, shape ``(P,)``.
        ends: Span ends in seconds, shape ``(P,)``.

    Returns:
        :class:`AlignedFeatures` of P spans.
    """
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    if s.shape != e.shape or np.any(e < s):
        raise InputError("align: starts and ends must have the same shape and ends >= starts")
    t = features.times
    lo = np.searchsorted(t, s, side="left")
    hi = np.searchsorted(t, e, side="left")
    n_in = hi - lo
    nearest = np.clip(np.searchsorted(t, (s + e) / 2), 0, t.size - 1)
    prev = np.clip(nearest - 1, 0, t.size - 1)
    closer_prev = np.abs(t[prev] - (s + e) / 2) <= np.abs(t[nearest] - (s + e) / 2)
    nearest = np.where(closer_prev, prev, nearest)
    lo = np.where(n_in > 0, lo, nearest)
    hi = np.where(n_in > 0, hi, nearest + 1)
    count = hi - lo
    power = 10.0 ** (features.energy_db / 10.0)
    cp = np.concatenate([[0.0], np.cumsum(power)])
    cv = np.concatenate([[0], np.cumsum(features.voiced)])
    cf = np.concatenate([[0.0], np.cumsum(np.where(features.voiced, features.f0_hz, 0.0))])
    n_voiced = cv[hi] - cv[lo]
    return AlignedFeatures(
        starts=s,
        ends=e,
        energy_db=10.0 * np.log10((cp[hi] - cp[lo]) / count),
        f0_hz=np.where(n_voiced > 0, (cf[hi] - cf[lo]) / np.maximum(n_voiced, 1), np.nan),
        voiced_fraction=n_voiced / count,
        n_frames=n_in.astype(np.int64),
        tracker=features.tracker,
        voicing_rule=features.voicing_rule,
    )
