"""The manifest of a spoken test set, and the atomic file writes it relies on.

``manifest.jsonl`` holds one :class:`ManifestEntry` per synthesised file; ``summary.json`` holds the request,
counts and the skipped (example, voice) pairs with their reasons. Both are replaced atomically (temporary file in
the same folder, fsync, ``os.replace``, fsync of the folder), as is every audio file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casceq.audio.tts.base import TARGET_SR, TTS_VERSION
from casceq.errors import InputError, require
from casceq.types import AudioRef, Example

MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class ManifestEntry:
    """One synthesised file.

    Attributes:
        example_id: ``Example.id``.
        task: Task name.
        voice: Voice name.
        path: File path relative to the output folder (POSIX separators).
        duration: Seconds of audio.
        sample_rate: Always ``TARGET_SR`` (16 kHz).
        text: The task's original text.
        spoken_text: The normalised text the voice read.
        sha256: Hex digest of the file.
    """

    example_id: str
    task: str
    voice: str
    path: str
    duration: float
    sample_rate: int
    text: str
    spoken_text: str
    sha256: str

    def audio_ref(self, out: str | os.PathLike[str]) -> AudioRef:
        """Return this file as an :class:`AudioRef` with an absolute path under ``out``."""
        path = str(Path(out).resolve() / self.path)
        return AudioRef(path, self.sample_rate, self.duration, self.voice, self.sha256)


@dataclass(frozen=True)
class SkipRecord:
    """An (example, voice) pair that has no audio, and why."""

    example_id: str
    voice: str
    reason: str


@dataclass(frozen=True)
class Manifest:
    """The spoken test set in one folder.

    Attributes:
        out: The output folder.
        entries: Synthesised files, sorted by (task, example_id, voice).
        skips: Pairs that could not be synthesised in the last run.
        request: What the last run asked for (task, n, voices, seed).
    """

    out: Path
    entries: tuple[ManifestEntry, ...]
    skips: tuple[SkipRecord, ...] = ()
    request: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def audio(self, example_id: str, voice: str) -> AudioRef | None:
        """Return the audio of one example in one voice, or None."""
        for e in self.entries:
            if e.example_id == example_id and e.voice == voice:
                return e.audio_ref(self.out)
        return None

    def with_audio(self, examples: Iterable[Example], voice: str) -> list[Example]:
        """Return copies of ``examples`` whose ``audio`` points at this voice's files (examples without audio dropped)."""
        from dataclasses import replace

        refs = {e.example_id: e.audio_ref(self.out) for e in self.entries if e.voice == voice}
        return [replace(ex, audio=refs[ex.id]) for ex in examples if ex.id in refs]

    def write(self) -> None:
        """Write ``manifest.jsonl`` and ``summary.json`` atomically."""
        lines = "".join(
            json.dumps(asdict(e), ensure_ascii=False, sort_keys=True) + "\n" for e in self.entries
        )
        _atomic_write_bytes(self.out / MANIFEST_NAME, lines.encode("utf-8"))
        summary = {
            "request": self.request,
            "tts_version": TTS_VERSION,
            "sample_rate": TARGET_SR,
            "n_files": len(self.entries),
            "n_skipped": len(self.skips),
            "voices": sorted({e.voice for e in self.entries}),
            "skips": [asdict(s) for s in self.skips],
        }
        _atomic_write_bytes(
            self.out / SUMMARY_NAME, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode()
        )

    @classmethod
    def load(cls, out: str | os.PathLike[str]) -> Manifest:
        """Read a folder's manifest (an empty manifest if there is none).

        Raises:
            InputError: On a malformed line (names the file and line).
        """
        root = Path(out)
        entries: list[ManifestEntry] = []
        path = root / MANIFEST_NAME
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        entries.append(ManifestEntry(**json.loads(line)))
                    except (json.JSONDecodeError, TypeError) as exc:
                        raise InputError(f"bad manifest line: {exc}", path=str(path), line=line_no) from exc
        skips: list[SkipRecord] = []
        request: dict[str, Any] = {}
        if (root / SUMMARY_NAME).exists():
            summary = json.loads((root / SUMMARY_NAME).read_text(encoding="utf-8"))
            skips = [SkipRecord(**s) for s in summary.get("skips", [])]
            request = summary.get("request", {})
        return cls(root, tuple(entries), tuple(skips), request)


def _fsync_dir(folder: Path) -> None:
    # The rename itself must reach the disk, or a crash can leave the old name pointing at nothing.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _atomic_write_bytes(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dest)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(dest.parent)


def write_flac_atomic(dest: Path, wav: Any, sr: int) -> str:
    """Write 16-bit FLAC via temp file + fsync + ``os.replace``; return the file's SHA-256.

    Args:
        dest: Final path.
        wav: Float audio in [-1, 1], shape ``(n,)``.
        sr: Sample rate.
    """
    sf = require("soundfile", "Writing FLAC", extra="audio")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dest)
    try:
        with open(tmp, "wb") as f:
            sf.write(f, wav, sr, format="FLAC", subtype="PCM_16")
            f.flush()
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(dest.parent)
    return digest


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_temp_files(root: Path) -> int:
    """Delete temporary files left by killed runs (those whose process is gone); returns how many."""
    removed = 0
    for tmp in root.rglob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)
        try:
            pid = int(parts[1])
            os.kill(pid, 0)
            continue  # its writer is still running
        except (ValueError, IndexError):
            continue  # not one of ours
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
