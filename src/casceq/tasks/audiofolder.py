"""Recorded speech in the Hugging Face ``audiofolder`` layout as a natural-speech user task.

The folder holds audio files and ``metadata.csv`` or ``metadata.jsonl`` with a ``file_name`` column (the
file's path relative to the folder) and the task's columns. Each row becomes an ``Example`` whose ``audio`` is
the file (voice ``"natural"``). Files of any rate and channel count are accepted: ``casceq.audio.io`` decodes,
downmixes and resamples them to 16 kHz mono where a system reads them; a file that does not decode (or holds
NaN samples) is then an input failure of the run, counted apart from the model's answers (docs/security.md).
Here, in the tasks layer, each file must exist, be non-empty and stay inside the folder.
"""

from __future__ import annotations

from pathlib import Path

from casceq.errors import InputError
from casceq.tasks._files import natural_audio
from casceq.tasks.base import Task
from casceq.tasks.userdata import file_rows, row_example
from casceq.tasks.userdef import DataSource
from casceq.types import Example

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
"""The metadata files of the audiofolder convention, in the order they are looked for."""

FILE_COLUMN = "file_name"
"""The audiofolder column naming each audio file."""


def metadata_file(folder: Path) -> Path:
    """The folder's ``metadata.csv`` or ``metadata.jsonl`` (exactly one of them)."""
    if not folder.is_dir():
        raise InputError("audiofolder not found", path=str(folder))
    found = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
    if len(found) != 1:
        raise InputError(
            f"an audiofolder needs exactly one of {', '.join(METADATA_FILES)} (found {len(found)})",
            path=str(folder),
        )
    return found[0]


def _audio_path(folder: Path, name: object) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"missing {FILE_COLUMN!r}")
    path = (folder / name.strip()).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"{FILE_COLUMN} {name!r} points outside the audiofolder")
    if not path.is_file():
        raise ValueError(f"audio file {name!r} not found")
    if path.stat().st_size == 0:
        raise ValueError(f"audio file {name!r} is empty")
    return path


def load_audiofolder(task: Task, data: DataSource) -> list[Example]:
    """Load every row of an audiofolder as an example with its recorded audio.

    Ids come from ``id_column`` or else the file name (without extension): an audiofolder's file names are
    stable where row order may not be.

    Raises:
        InputError: No metadata file, or a bad row (the metadata file and line are named).
    """
    assert data.audiofolder is not None
    folder = Path(data.audiofolder)
    meta = metadata_file(folder)
    out: list[Example] = []
    seen: set[str] = set()
    for i, (line, row) in enumerate(file_rows(meta)):
        try:
            path = _audio_path(folder, row.get(FILE_COLUMN))
            ex = row_example(task, data, row, i)
        except ValueError as exc:
            raise InputError(str(exc), path=str(meta), line=line) from exc
        example_id = ex.id if data.id_column else Path(str(row[FILE_COLUMN])).with_suffix("").as_posix()
        if example_id in seen:
            raise InputError(f"duplicate example id {example_id!r}", path=str(meta), line=line)
        seen.add(example_id)
        meta_fields = {**ex.meta, FILE_COLUMN: row[FILE_COLUMN]}
        out.append(
            Example(example_id, task.name, ex.text, ex.label, ex.choices, natural_audio(path), meta_fields)
        )
    if not out:
        raise InputError("no rows", path=str(meta))
    return out
