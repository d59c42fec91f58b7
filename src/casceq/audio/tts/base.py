"""The voice interface: one :class:`TTSBackend` per voice, described by a frozen :class:`VoiceInfo`.

Every backend returns 16 kHz mono float32 audio peak-normalised to ``PEAK``, whatever its engine's native rate,
so voices are interchangeable downstream (ASR front ends, SNR mixing, feature extraction).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING

from casceq.errors import CasceqError, require

if TYPE_CHECKING:
    import numpy as np

TARGET_SR = 16_000
"""Sample rate of every synthesised file (Hz)."""

PEAK = 10 ** (-1 / 20)
"""Peak level after normalisation (-1 dBFS): engines differ by up to 10 dB in raw level."""

TTS_VERSION = "1"
"""Version of the adapters' audio path (resampling, normalisation, engine calls). Part of every cache key:
bump it when a change here alters the audio, so cached files are re-synthesised."""

SUBPROCESS_TIMEOUT = 120.0
"""Seconds a command-line engine may take for one text before the item is skipped."""


class TTSError(CasceqError):
    """A voice failed on one text (engine error, timeout, silent output); the batch records it and goes on."""


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice is, independent of whether it can run here.

    Attributes:
        name: Registry name, used on the command line and in file names (``"flite-slt"``).
        engine: Engine name (``"espeak-ng"``, ``"flite"``, ``"festival"``, ``"piper"``, ``"hibari"``, ``"edge"``).
        sex: ``"female"`` or ``"male"`` (as the voice's authors describe it).
        license: Licence of the engine and the voice data, in that order where they differ.
        description: One line for ``casceq synth --list-voices``.
        settings: Engine settings that change the audio, as sorted ``(key, value)`` pairs (part of cache keys).
        requires: Python package or program the voice needs, named in errors.
        extra: The casceq extra that installs it (None for system programs).
        offline: False for voices that need a network service.
        stochastic: True if the engine samples noise; its seed then enters the cache key.
    """

    name: str
    engine: str
    sex: str
    license: str
    description: str
    settings: tuple[tuple[str, str], ...] = ()
    requires: str = ""
    extra: str | None = None
    offline: bool = True
    stochastic: bool = False

    def setting(self, key: str, default: str = "") -> str:
        """Return the value of one engine setting."""
        return dict(self.settings).get(key, default)


def cache_key(info: VoiceInfo, spoken: str, seed: int = 0) -> str:
    """Hex SHA-256 of everything that determines a voice's audio for one text.

    Args:
        info: The voice.
        spoken: The normalised text it reads.
        seed: Synthesis seed; counted only for stochastic engines (deterministic ones ignore it).

    Returns:
        64 hex characters.
    """
    payload = {
        "text": spoken,
        "voice": info.name,
        "engine": info.engine,
        "settings": [list(kv) for kv in info.settings],
        "tts_version": TTS_VERSION,
        "seed": seed if info.stochastic else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def to_target(wav: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at ``TARGET_SR``, peak-normalised to ``PEAK``.

    Args:
        wav: Audio, shape ``(n,)`` or ``(n, channels)``, any numeric dtype (integers are scaled to [-1, 1]).
        sr: Its sample rate in Hz.

    Returns:
        Float32 array, shape ``(round(n * TARGET_SR / sr),)``.

    Raises:
        TTSError: If the audio is empty or silent (an engine that said nothing).
    """
    import numpy as np
    from scipy.signal import resample_poly

    x = np.asarray(wav)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != TARGET_SR:
        g = gcd(int(sr), TARGET_SR)
        # Polyphase with its default Kaiser window: anti-aliased, and exact for integer ratios (22.05 -> 16 kHz).
        x = resample_poly(x, TARGET_SR // g, int(sr) // g)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < 1e-4:
        raise TTSError("the engine produced no audible audio")
    return (x * (PEAK / peak)).astype(np.float32)


def ascii_text(text: str) -> str:
    """Fold text to ASCII for engines that read bytes (flite, festival): accents dropped, not the letters."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


class TTSBackend(ABC):
    """One voice of one engine.

    Subclasses implement :meth:`available` and :meth:`_native`; :meth:`synthesize` converts to 16 kHz.
    Attributes ``name``, ``engine``, ``sex`` and ``license`` mirror :attr:`info`.
    """

    thread_safe: bool = True
    """False if concurrent calls on one instance are unsafe (the batch then serialises them)."""

    def __init__(self, info: VoiceInfo) -> None:
        self.info = info
        self.name = info.name
        self.engine = info.engine
        self.sex = info.sex
        self.license = info.license

    @abstractmethod
    def available(self) -> bool:
        """Whether this voice can synthesise on this machine now (cheap; never raises)."""

    @abstractmethod
    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        """Synthesise at the engine's native rate: ``(audio of shape (n,), sample rate)``."""

    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        """Speak one text.

        Args:
            text: Non-empty text (already normalised by :func:`casceq.audio.textnorm.spoken_text`).
            seed: Seed for stochastic engines (ignored by deterministic ones).

        Returns:
            ``(wav, TARGET_SR)``: float32 mono audio of shape ``(n,)``, peak at ``PEAK``.

        Raises:
            TTSError: On an engine failure or empty text.
            MissingDependency: If the engine's package is not installed.
        """
        if not text.strip():
            raise TTSError("empty text")
        wav, sr = self._native(text, seed)
        return to_target(wav, sr), TARGET_SR


def have_program(program: str) -> bool:
    """Whether a command-line program is on PATH."""
    return shutil.which(program) is not None


def run_to_wav(
    cmd: Sequence[str], out_name: str, *, text_file: str | None = None, text: str = ""
) -> tuple[np.ndarray, int]:
    """Run a command-line engine that writes a WAV file; read it back.

    Args:
        cmd: Command; ``{out}`` and ``{text}`` in its items become the output WAV and the input text file.
        out_name: File name of the WAV inside the temporary directory.
        text_file: If given, ``text`` is written to this file name first (engines that read files, which also
            keeps texts starting with ``-`` from being read as options).
        text: The text.

    Returns:
        ``(audio of shape (n,) float32, sample rate)``.

    Raises:
        TTSError: If the program fails, times out or writes no audio.
    """
    sf = require("soundfile", "Reading TTS engine output", extra="audio")
    with tempfile.TemporaryDirectory(prefix="casceq-tts-") as tmp:
        out = Path(tmp) / out_name
        txt = Path(tmp) / (text_file or "input.txt")
        if text_file:
            txt.write_text(text + "\n", encoding="utf-8")
        argv = [a.replace("{out}", str(out)).replace("{text}", str(txt)) for a in cmd]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=SUBPROCESS_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TTSError(f"{argv[0]} timed out after {SUBPROCESS_TIMEOUT:.0f} s") from exc
        except OSError as exc:
            raise TTSError(f"{argv[0]} could not run: {exc}") from exc
        if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TTSError(
                f"{argv[0]} failed (exit {proc.returncode}): {err[-1] if err else 'no audio written'}"
            )
        wav, sr = sf.read(str(out), dtype="float32", always_2d=False)
    return wav, int(sr)
