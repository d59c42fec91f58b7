"""Load, resample, validate and write audio.

Everything inside casceq works on float32 mono arrays at :data:`SAMPLE_RATE` (16 kHz, what Whisper-style
encoders take). This module is the one place that turns files into such arrays and back:

- WAV/FLAC/OGG/MP3 are read with soundfile (libsndfile); containers it cannot read (MP4/M4A/WebM/MKV/AAC:
  the MELD and MUStARD releases) are decoded by the ``ffmpeg`` program in a subprocess.
- Stereo is downmixed by averaging channels; other rates are resampled with ``scipy.signal.resample_poly``
  (an exact rational ratio, polyphase anti-aliasing filter).
- Bad files never crash a batch silently: empty, truncated or undecodable files and NaN/inf samples raise
  :class:`~casceq.errors.InputError` naming the file. Silence is not an error here (some tasks may keep it);
  :func:`is_silent` flags it and callers that cannot use it (SNR mixing) refuse it.

soundfile and scipy are imported inside the functions that need them, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from math import gcd
from pathlib import Path

import numpy as np

from casceq.errors import InputError, MissingDependency, require

SAMPLE_RATE = 16_000
"""The sample rate (Hz) of every array inside casceq."""

SILENCE_DB = -80.0
"""RMS level (dBFS) at or below which a clip counts as silent (16-bit dither sits near -101 dBFS)."""

# Suffixes libsndfile decodes itself; anything else goes to ffmpeg.
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64"})


def ffmpeg_available() -> bool:
    """Whether the ``ffmpeg`` program is on ``PATH`` (needed for MP4/M4A and other containers)."""
    return shutil.which("ffmpeg") is not None


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (part of every audio cache key).

    Raises:
        InputError: The file does not exist or cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk_size):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})", path=str(path)) from exc
    return digest.hexdigest()


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono signal by the exact rational ratio ``target_sr / orig_sr``.

    Args:
        wav: Samples, shape ``(n,)``.
        orig_sr: Rate of ``wav`` in Hz.
        target_sr: Wanted rate in Hz.

    Returns:
        float32 array of shape ``(ceil(n * target_sr / orig_sr),)``; ``wav`` itself when the rates match.
    """
    if orig_sr == target_sr:
        return np.asarray(wav, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    out = resample_poly(np.asarray(wav, dtype=np.float64), int(target_sr) // g, int(orig_sr) // g)
    return out.astype(np.float32)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    sf = require("soundfile", "reading audio files", extra="audio")
    try:
        with sf.SoundFile(str(path)) as fh:
            declared = fh.frames
            data = fh.read(dtype="float32", always_2d=True)
            sr = int(fh.samplerate)
    except (RuntimeError, sf.LibsndfileError, EOFError) as exc:
        # libsndfile reports truncated FLAC as "lost sync" and empty/foreign files as "not recognised".
        raise InputError(f"unreadable or truncated audio ({exc})", path=str(path)) from exc
    if declared > 0 and data.shape[0] < declared:
        raise InputError(f"truncated audio: {data.shape[0]} of {declared} frames decoded", path=str(path))
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], sr


def _read_ffmpeg(path: Path, sr: int) -> np.ndarray:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MissingDependency("ffmpeg", f"decoding {path.suffix or 'this'} audio ({path})")
    # ffmpeg downmixes (-ac 1) and resamples (-ar) itself; f32le on stdout avoids a temporary file.
    cmd = [
        exe,
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(sr),
        "-f",
        "f32le",
        "-",
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        if msg and "does not contain any stream" in msg[-1]:
            raise InputError("no audio stream in the file", path=str(path))
        raise InputError(
            f"ffmpeg cannot decode audio ({msg[-1] if msg else proc.returncode})", path=str(path)
        )
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def load_audio(path: str | os.PathLike[str], sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at ``sr`` Hz, validated.

    Args:
        path: WAV/FLAC/OGG/MP3 (read by soundfile), or MP4/M4A/other containers (decoded by ffmpeg).
        sr: Wanted sample rate in Hz.

    Returns:
        float32 array of shape ``(n_samples,)`` (channels averaged, resampled to ``sr``).

    Raises:
        InputError: Missing, empty, truncated or undecodable file, or NaN/inf samples (the message names it).
        MissingDependency: The file needs ffmpeg and it is not installed.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("audio file not found", path=str(p))
    if p.stat().st_size == 0:
        raise InputError("empty audio file (0 bytes)", path=str(p))
    if p.suffix.lower() in _SOUNDFILE_SUFFIXES:
        wav, file_sr = _read_soundfile(p)
        wav = resample(wav, file_sr, sr)
    else:
        wav = _read_ffmpeg(p, sr)
    return validate(wav, p)


def validate(wav: np.ndarray, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Check that ``wav`` is usable audio and return it as float32 mono.

    Args:
        wav: Samples, shape ``(n,)``, or ``(n, channels)`` which is downmixed.
        path: File (or example id) the samples came from, named in errors.

    Returns:
        float32 array of shape ``(n,)``.

    Raises:
        InputError: No samples, NaN or infinite samples, or more than two dimensions.
    """
    where = None if path is None else str(path)
    arr = np.asarray(wav, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=1, dtype=np.float32)
    if arr.ndim != 1:
        raise InputError(f"audio must be 1-D or (samples, channels), got shape {arr.shape}", path=where)
    if arr.size == 0:
        raise InputError("audio has no samples", path=where)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(f"{int(bad.sum())} NaN/inf samples (first at sample {first})", path=where)
    return arr


def rms_db(wav: np.ndarray) -> float:
    """RMS level of ``wav`` (shape ``(n,)``) in dBFS; ``-inf`` for all-zero audio."""
    power = float(np.mean(np.square(wav, dtype=np.float64))) if wav.size else 0.0
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def is_silent(wav: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """Whether ``wav`` (shape ``(n,)``) is silent: empty, all zeros, or RMS at or below ``threshold_db``."""
    return rms_db(wav) <= threshold_db


def write_flac(
    path: str | os.PathLike[str], wav: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16"
) -> Path:
    """Write mono audio to a FLAC file atomically (temporary name in the same folder, then ``os.replace``).

    A reader never sees a half-written file, and a crash leaves either the old file or none.

    Args:
        path: Destination; parent folders are created.
        wav: Samples in [-1, 1], shape ``(n,)``.
        sr: Sample rate in Hz.
        subtype: soundfile subtype (``"PCM_16"`` or ``"PCM_24"``).

    Returns:
        The destination path.

    Raises:
        InputError: Invalid samples (see :func:`validate`) or samples outside [-1, 1], which FLAC would clip.
    """
    sf = require("soundfile", "writing FLAC", extra="audio")
    dest = Path(path)
    arr = validate(wav, dest)
    peak = float(np.max(np.abs(arr)))
    if peak > 1.0:
        raise InputError(f"peak {peak:.3f} > 1 would clip in FLAC: rescale first", path=str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".tmp.flac", dir=dest.parent)
    os.close(fd)
    try:
        sf.write(tmp, arr, int(sr), format="FLAC", subtype=subtype)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
