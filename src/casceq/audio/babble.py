"""Babble noise sources: real babble recordings, and MUSAN-style babble summed from several talkers.

- :class:`RecordedBabble`: real multi-talker babble recordings (the default; offline: the NOISEX-92-style files in
  ``datasets/babble``), resampled to 16 kHz and looped from a random offset.
- :class:`TalkerBabble`: MUSAN-style babble built by summing 3–7 level-normalised talkers drawn from a folder of
  speech (RAVDESS actors offline, or a user's MUSAN ``speech`` folder), never including the target speaker.

Both draw all randomness from the generator they are given, so one seed gives one noise.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from casceq.audio.io import SAMPLE_RATE, file_sha256, is_silent, load_audio
from casceq.errors import InputError

_RAVDESS_NAME = re.compile(r"^\d\d-\d\d-\d\d-\d\d-\d\d-\d\d-(\d\d)$")


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def speaker_key(speaker: object) -> str:
    """Canonical speaker id: ``"01"``, ``1`` and ``"1"`` are the same speaker (RAVDESS actor numbers)."""
    s = str(speaker).strip()
    return str(int(s)) if s.isdigit() else s


def ravdess_actor(path: str | os.PathLike[str]) -> str | None:
    """Return the actor id (``"1"``..``"24"``) in a RAVDESS file name ``03-01-EE-II-SS-RR-AA.ext``, else None."""
    m = _RAVDESS_NAME.match(Path(path).stem)
    return speaker_key(m.group(1)) if m else None


def default_speaker_of(path: Path) -> str:
    """RAVDESS actor from the file name; otherwise the file stem (each MUSAN speech file is one reader)."""
    return ravdess_actor(path) or path.stem


def trim_silence(wav: np.ndarray, sr: int, top_db: float = 40.0, frame_s: float = 0.02) -> np.ndarray:
    """Cut leading/trailing frames more than ``top_db`` below the loudest frame. Shape ``(n,)`` -> ``(k,)``."""
    hop = max(1, int(sr * frame_s))
    n_frames = wav.size // hop
    if n_frames < 2:
        return wav
    power = np.mean(np.square(wav[: n_frames * hop].reshape(n_frames, hop), dtype=np.float64), axis=1)
    active = np.flatnonzero(power >= power.max() * 10.0 ** (-top_db / 10.0))
    return wav[active[0] * hop : (active[-1] + 1) * hop]


class BabbleSource(ABC):
    """Where babble noise comes from. Subclasses implement :meth:`sample` and :attr:`fingerprint`."""

    name: str = "babble"

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Hex digest of everything that changes the noise (files, rate, parameters): part of cache keys."""

    @abstractmethod
    def sample(
        self, n_samples: int, rng: np.random.Generator, exclude_speaker: object | None = None
    ) -> np.ndarray:
        """Draw ``n_samples`` of babble, float32 shape ``(n_samples,)``.

        Args:
            n_samples: Length wanted.
            rng: The only source of randomness (same rng state, same noise).
            exclude_speaker: The target utterance's speaker, never used as a babble talker.
        """


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


class RecordedBabble(BabbleSource):
    """Real babble recordings, each resampled to ``sr``, normalised to unit RMS and looped from a random offset.

    Each :meth:`sample` picks one recording at random. Recordings have no target speaker, so
    ``exclude_speaker`` is ignored.
    """

    name = "recorded"

    def __init__(self, files: Sequence[str | os.PathLike[str]], sr: int = SAMPLE_RATE) -> None:
        """Use these recordings (any rate, any format :func:`~casceq.audio.io.load_audio` reads)."""
        self.files = tuple(sorted(Path(f) for f in files))
        if not self.files:
            raise InputError("no babble recordings given")
        self.sr = sr
        self._signals: list[np.ndarray] | None = None
        self._fingerprint: str | None = None

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], pattern: str = "*babble*.wav", sr: int = SAMPLE_RATE
    ) -> RecordedBabble:
        """All files in ``folder`` matching ``pattern``.

        The default pattern skips ISTS in the shared folder: it is one spliced talker at a time, not babble.
        """
        files = sorted(Path(folder).glob(pattern))
        if not files:
            raise InputError(f"no babble recordings matching {pattern!r}", path=str(folder))
        return cls(files, sr)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the recordings' contents and the sample rate."""
        if self._fingerprint is None:
            self._fingerprint = _digest(["recorded", str(self.sr), *(file_sha256(f) for f in self.files)])
        return self._fingerprint

    def signals(self) -> list[np.ndarray]:
        """Return the recordings at ``sr``, each with unit RMS (loaded once)."""
        if self._signals is None:
            loaded = []
            for f in self.files:
                wav = load_audio(f, self.sr)
                if is_silent(wav):
                    raise InputError("babble recording is silent", path=str(f))
                loaded.append((wav / np.sqrt(_power(wav))).astype(np.float32))
            self._signals = loaded
        return self._signals

    def sample(
        self, n_samples: int, rng: np.random.Generator, exclude_speaker: object | None = None
    ) -> np.ndarray:
        """One recording chosen by ``rng``, from a random offset, looped to ``n_samples``."""
        sigs = self.signals()
        sig = sigs[int(rng.integers(len(sigs)))]
        start = int(rng.integers(sig.size))
        return np.take(sig, np.arange(start, start + n_samples), mode="wrap")


class TalkerBabble(BabbleSource):
    """MUSAN-style babble: the sum of 3–7 talkers, each a stream of that talker's clips at unit RMS.

    Clips are trimmed of leading/trailing silence (so a talker is talking), normalised to unit RMS (so no
    talker dominates), concatenated in random order and cropped from a random offset. Unreadable or silent
    clips are skipped and recorded in :attr:`skipped` (path -> reason).
    """

    name = "talkers"

    def __init__(
        self,
        files_by_speaker: Mapping[str, Sequence[Path]],
        n_talkers: tuple[int, int] = (3, 7),
        sr: int = SAMPLE_RATE,
        max_cached: int = 512,
    ) -> None:
        """Use ``files_by_speaker`` (speaker id -> clips); draw ``n_talkers[0]..n_talkers[1]`` talkers a sample."""
        lo, hi = n_talkers
        if not 1 <= lo <= hi:
            raise InputError(f"bad talker range {n_talkers}: need 1 <= low <= high")
        self.files = {speaker_key(k): tuple(sorted(v)) for k, v in files_by_speaker.items() if v}
        self.n_talkers = (lo, hi)
        self.sr = sr
        self.max_cached = max_cached
        self.skipped: dict[str, str] = {}
        self._cache: dict[Path, np.ndarray | None] = {}
        self._fingerprint: str | None = None

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike[str],
        speaker_of: Callable[[Path], str] = default_speaker_of,
        n_talkers: tuple[int, int] = (3, 7),
        sr: int = SAMPLE_RATE,
    ) -> TalkerBabble:
        """Every ``*.flac``/``*.wav`` under ``folder``, grouped by ``speaker_of(path)``."""
        root = Path(folder)
        groups: dict[str, list[Path]] = {}
        for p in sorted([*root.rglob("*.flac"), *root.rglob("*.wav")]):
            groups.setdefault(speaker_of(p), []).append(p)
        if not groups:
            raise InputError("no .flac/.wav speech files for babble talkers", path=str(root))
        return cls(groups, n_talkers, sr)

    @property
    def fingerprint(self) -> str:
        """Digest of speakers, file names and sizes, talker range and rate (contents of large corpora unread)."""
        if self._fingerprint is None:
            parts = ["talkers", str(self.sr), repr(self.n_talkers)]
            for spk in sorted(self.files):
                parts += [spk, *(f"{p.name}:{p.stat().st_size}" for p in self.files[spk])]
            self._fingerprint = _digest(parts)
        return self._fingerprint

    def _clip(self, path: Path) -> np.ndarray | None:
        if path not in self._cache:
            clip: np.ndarray | None = None
            try:
                wav = trim_silence(load_audio(path, self.sr), self.sr)
                if is_silent(wav):
                    self.skipped[str(path)] = "silent"
                else:
                    clip = (wav / np.sqrt(_power(wav))).astype(np.float32)
            except InputError as exc:
                self.skipped[str(path)] = str(exc)
            if len(self._cache) >= self.max_cached:
                self._cache.pop(next(iter(self._cache)))
            self._cache[path] = clip
        return self._cache[path]

    def _stream(self, speaker: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        parts, total = [], 0
        files = self.files[speaker]
        for _ in range(10_000):  # bounded: a speaker whose every clip is unusable cannot loop forever
            if total > n_samples:
                break
            clip = self._clip(files[int(rng.integers(len(files)))])
            if clip is not None:
                parts.append(clip)
                total += clip.size
        if total <= n_samples:
            raise InputError(f"talker {speaker!r} has no usable speech clips (see .skipped)")
        stream = np.concatenate(parts)
        start = int(rng.integers(stream.size - n_samples))
        return stream[start : start + n_samples]

    def sample(
        self, n_samples: int, rng: np.random.Generator, exclude_speaker: object | None = None
    ) -> np.ndarray:
        """Sum of k talkers (k drawn uniformly from ``n_talkers``), none of them ``exclude_speaker``."""
        excluded = None if exclude_speaker is None else speaker_key(exclude_speaker)
        speakers = sorted(s for s in self.files if s != excluded)
        lo, hi = self.n_talkers
        if len(speakers) < lo:
            raise InputError(
                f"babble needs at least {lo} talkers other than {excluded!r}; found {len(speakers)}"
            )
        k = min(int(rng.integers(lo, hi + 1)), len(speakers))
        chosen = rng.choice(len(speakers), size=k, replace=False)
        out = np.zeros(n_samples, dtype=np.float64)
        for i in sorted(chosen):
            out += self._stream(speakers[int(i)], n_samples, rng)
        return (out / np.sqrt(k)).astype(np.float32)
