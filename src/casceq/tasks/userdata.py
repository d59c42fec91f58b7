"""Examples of user-defined tasks: rows of a CSV/JSONL/Parquet file, a hub dataset, or an audiofolder.

Every row becomes an ``Example`` with the id from ``id_column`` (or ``<task>-<row index>``), the text, and the
gold label mapped onto the task's canonical label (exact, or equal as the parser sees it: "Alarm" -> "alarm";
integers through ``label_names``). A bad row raises ``InputError`` naming the file and line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from casceq.errors import InputError, require
from casceq.jsonlines import read_jsonl
from casceq.tasks._files import natural_audio
from casceq.tasks.base import Task
from casceq.tasks.parsing import surface_key
from casceq.tasks.userdef import DataSource, UserTask
from casceq.types import Example

LIST_SEPARATOR = "|"
"""Separator of list cells (choices, aliases) in CSV files."""


def _rows_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            for row in reader:
                # DictReader files surplus cells under None and pads short rows with None: both mean the
                # row does not match the header (often an unquoted comma), so its label would be a guess.
                if None in row or None in row.values():
                    n = (
                        len(row) - 1 + len(row[None])
                        if None in row
                        else sum(v is not None for v in row.values())
                    )
                    raise InputError(
                        f"{n} cells where the header has {len(reader.fieldnames or ())} "
                        "(quote a text that holds a comma)",
                        path=str(path),
                        line=reader.line_num,
                    )
                yield reader.line_num, dict(row)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from exc
        except csv.Error as exc:
            raise InputError(f"not a valid CSV file ({exc})", path=str(path), line=reader.line_num) from exc


def _rows_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    pq = require("pyarrow.parquet", "reading Parquet task data", package="pyarrow")
    pa = require("pyarrow", "reading Parquet task data", package="pyarrow")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=str(path)) from exc
    for i, row in enumerate(table.to_pylist()):
        yield i + 1, row


def file_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line or row number, row)`` of a CSV, JSONL or Parquet file."""
    if not path.is_file():
        raise InputError("task data file not found", path=str(path))
    kind = (fmt or path.suffix.lstrip(".")).lower()
    readers = {"csv": _rows_csv, "jsonl": read_jsonl, "json": read_jsonl, "parquet": _rows_parquet}
    if kind not in readers:
        raise InputError(
            f"unknown data format {kind!r} (csv, jsonl or parquet; or set data.format)", path=str(path)
        )
    return readers[kind](path)


def _hub_rows(data: DataSource, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    datasets = require("datasets", "hub task data", extra="hub")
    assert data.hf is not None
    rows = datasets.load_dataset(data.hf, data.config, split=split)
    for i, row in enumerate(rows):
        yield i, dict(row)


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(LIST_SEPARATOR) if v.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return ()


def gold_label(task: Task, data: DataSource, value: Any) -> str:
    """Map a data cell onto the task's canonical label; raise ValueError when it is none of them."""
    if isinstance(value, str) and data.label_names and value.strip().lstrip("-").isdigit():
        value = int(value)  # a CSV cell is text: "0" names label_names[0]
    if isinstance(value, int | float) and not isinstance(value, bool) and data.label_names:
        index = int(value)
        if index != value or not 0 <= index < len(data.label_names):
            raise ValueError(f"label index {value!r} outside label_names {list(data.label_names)}")
        value = data.label_names[index]
    text = str(value).strip() if value is not None else ""
    if task.open_answer:
        if not text:
            raise ValueError("empty answer")
        return text
    if text in task.labels:
        return text
    by_key = {surface_key(lab): lab for lab in task.labels}
    if surface_key(text) in by_key:
        return by_key[surface_key(text)]
    raise ValueError(f"label {value!r} is not one of {list(task.labels)}")


def row_example(task: Task, data: DataSource, row: Mapping[str, Any], index: int) -> Example:
    """Build one example from a row (ValueError says what is wrong with it)."""
    text = row.get(data.text_column)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"missing or empty text column {data.text_column!r}")
    if data.label_column not in row:
        raise ValueError(f"missing label column {data.label_column!r}")
    label = gold_label(task, data, row[data.label_column])
    raw_id = row.get(data.id_column) if data.id_column else None
    if data.id_column and (raw_id is None or not str(raw_id).strip()):
        raise ValueError(f"missing id column {data.id_column!r}")
    example_id = str(raw_id).strip() if raw_id is not None else f"{task.name}-{index:06d}"
    choices: tuple[str, ...] = ()
    if data.choices_column:
        choices = _as_list(row.get(data.choices_column))
        if len(choices) != len(task.labels):
            raise ValueError(
                f"expected {len(task.labels)} choices in {data.choices_column!r}, got {len(choices)}"
            )
    meta: dict[str, Any] = {"row": index}
    if task.open_answer:
        aliases = _as_list(row.get(data.aliases_column)) if data.aliases_column else ()
        meta["aliases"] = tuple(dict.fromkeys([label, *aliases]))
    return Example(id=example_id, task=task.name, text=text.strip(), label=label, choices=choices, meta=meta)


def load_user_examples(user: UserTask, split: str | None = None) -> list[Example]:
    """Load every example of a user task, in source order.

    Raises:
        InputError: A task without ``[data]``, a missing file, a bad row (file and line named), or duplicate ids.
    """
    task, data = user.task, user.data
    if data is None:
        raise InputError(f"task {task.name!r} has no [data] table: it can be imported and compared, not run",
                         path=user.source_file)  # fmt: skip
    if data.audiofolder is not None:
        return load_audiofolder(task, data)
    if data.path is not None:
        where = data.path
        rows = file_rows(Path(data.path), data.fmt)
    else:
        where = f"hub dataset {data.hf} ({split or data.split})"
        rows = _hub_rows(data, split or data.split)
    out: list[Example] = []
    seen: set[str] = set()
    for i, (line, row) in enumerate(rows):
        try:
            ex = row_example(task, data, row, i)
        except ValueError as exc:
            raise InputError(str(exc), path=where, line=line) from exc
        if ex.id in seen:
            raise InputError(f"duplicate example id {ex.id!r}", path=where, line=line)
        seen.add(ex.id)
        out.append(ex)
    if not out:
        raise InputError("no examples", path=where)
    return out


# --- recorded speech in the Hugging Face audiofolder layout ---------------------------------------------------
# Recorded speech in the Hugging Face ``audiofolder`` layout as a natural-speech user task.
#
# The folder holds audio files and ``metadata.csv`` or ``metadata.jsonl`` with a ``file_name`` column (the
# file's path relative to the folder) and the task's columns. Each row becomes an ``Example`` whose ``audio`` is
# the file (voice ``"natural"``). Files of any rate and channel count are accepted: ``casceq.audio.io`` decodes,
# downmixes and resamples them to 16 kHz mono where a system reads them; a file that does not decode (or holds
# NaN samples) is then an input failure of the run, counted apart from the model's answers (docs/security.md).
# Here, in the tasks layer, each file must exist, be non-empty and stay inside the folder.

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
