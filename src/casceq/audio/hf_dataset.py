"""A spoken test set (synthesis folders) as a Hugging Face dataset on disk, for other harnesses or publishing.

One row per clip: ``audio`` (an ``Audio`` column holding the clip's file bytes and name, 16 kHz), ``text`` (the
task's text), ``spoken_text`` (what the voice read), ``label`` (gold; for open answers the answer),
``voice``, ``condition`` (``clean``: synthesis folders hold clean speech), ``item`` (the example id) and
``task``. The column is written with ``decode=False`` so the stored bytes are the file's bytes; datasets >= 4
decodes audio with torchcodec (``ds.cast_column("audio", Audio())``), which casceq does not need.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from casceq.audio.tts.manifest import Manifest
from casceq.errors import InputError, require
from casceq.tasks import load_examples
from casceq.types import CLEAN

COLUMNS = ("audio", "text", "spoken_text", "label", "voice", "condition", "item", "task")
"""The dataset's columns, in order."""


def _clip_path(folder: Path, name: object, example_id: str, voice: str) -> Path:
    """The clip a manifest entry names: under the synthesis folder, present, and decodable as audio.

    The dataset is made to be shared (``push_to_hub``), so a manifest naming ``/abs/path`` or ``../x`` must not
    put another local file's bytes into it (the same rule as ``report --audio``, docs/security.md).
    """
    import soundfile as sf

    where = str(folder / "manifest.jsonl")
    if not isinstance(name, str) or not name:
        raise InputError(
            f"clip of {example_id!r} ({voice}): 'path' must be a file name, got {name!r}", path=where
        )
    path = (folder / name).resolve()  # an absolute name replaces folder; ".." and symlinks are resolved
    if not path.is_relative_to(folder.resolve()):
        raise InputError(
            f"clip of {example_id!r} ({voice}): path {name!r} leads to {path}, outside the synthesis folder "
            f"{folder.resolve()}: refused",
            path=where,
        )
    if not path.is_file():
        raise InputError(f"clip of {example_id!r} ({voice}) is missing", path=str(path))
    try:
        sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"clip of {example_id!r} ({voice}) is not audio ({exc})", path=str(path)) from exc
    return path


def _rows(synth_dirs: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    golds: dict[str, dict[str, str]] = {}
    for folder in map(Path, synth_dirs):
        manifest = Manifest.load(folder)
        if not manifest.entries:
            raise InputError("no synthesised clips (manifest.jsonl is empty or missing)", path=str(folder))
        for e in manifest.entries:
            if e.task not in golds:
                golds[e.task] = {ex.id: ex.label for ex in load_examples(e.task)}
            label = golds[e.task].get(e.example_id)
            if label is None:
                raise InputError(f"example {e.example_id!r} is not in task {e.task!r}", path=str(folder))
            path = _clip_path(folder, e.path, e.example_id, e.voice)
            rows.append(
                {"audio": {"bytes": path.read_bytes(), "path": Path(e.path).name}, "text": e.text,
                 "spoken_text": e.spoken_text, "label": label, "voice": e.voice, "condition": CLEAN,
                 "item": e.example_id, "task": e.task}
            )  # fmt: skip
    return rows


def export_hf_dataset(synth_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> int:
    """Write the clips of synthesis folders as a dataset with ``save_to_disk``; returns the number of rows.

    Raises:
        InputError: A folder without clips, a missing clip, an example not in its task, or ``out`` not empty.
        MissingDependency: ``datasets`` is not installed (extra ``hub``).
    """
    datasets = require("datasets", "exporting a Hugging Face dataset", extra="hub")
    pa = require("pyarrow", "exporting a Hugging Face dataset", extra="hub")
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError(
            "exists and is not a folder: give a new or empty folder for the dataset", path=str(target)
        )
    if target.exists() and any(target.iterdir()):
        raise InputError("output folder exists and is not empty", path=str(target))
    rows = _rows(synth_dirs)
    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=16_000, decode=False),
            **{c: datasets.Value("string") for c in COLUMNS[1:]},
        }
    )
    # Built from an Arrow table: datasets' own encoder wants torchcodec even for raw bytes.
    table = pa.table({c: pa.array([r[c] for r in rows], type=features[c]()) for c in COLUMNS})
    dataset = datasets.Dataset(table, info=datasets.DatasetInfo(features=features))
    dataset.save_to_disk(str(target))
    return len(rows)
