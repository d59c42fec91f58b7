"""File helpers shared by the loaders: required files, JSON lines, typed fields, natural-speech audio refs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.jsonlines import read_jsonl
from casceq.tasks._audio_header import audio_header
from casceq.types import AudioRef

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp4", ".mp3")


def need_file(folder: Path, name: str, task: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise InputError(f"{task}: expected the official file {name} in this folder", path=str(folder))
    return path


def jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file (``casceq.jsonlines``)."""
    return read_jsonl(path)


def field(obj: dict[str, Any], key: str, kind: type, path: Path, line: int | None) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"missing or invalid field {key!r}", path=str(path), line=line)
    return value


def natural_audio(path: Path) -> AudioRef:
    rate, duration = audio_header(path)
    return AudioRef(path=str(path.resolve()), sample_rate=rate, duration=duration, voice="natural")


def audio_index(folders: list[Path]) -> dict[str, Path]:
    """Map file stem -> audio path over the folders that exist (first folder and extension win)."""
    index: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() in AUDIO_EXTENSIONS and stem not in index:
                index[stem] = folder / name
    return index
