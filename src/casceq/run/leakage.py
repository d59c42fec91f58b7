"""A speech LLM is never evaluated on text its projector was trained on (checked when a run starts).

A native Ultravox checkpoint ships ``training_texts.txt`` beside its weights: one key per training text (the
first 12 hex digits of the SHA-256 of the normalised text, ``text_key``), sorted. ``casceq train speech-llm``
writes it; the bundled checkpoint's list was recomputed from its recorded training config with the recipe of
``casceq.train.data.training_texts`` (AG News and MELD train texts; the backbone's generated film reviews are not
dataset items and share no 6-word run with any SST-2 sentence). Texts are compared, not ids: MELD's train and test
splits reuse dialogue ids, and a duplicated sentence under another id is the same leak.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from casceq.errors import LeakageError
from casceq.run.build import native_folder
from casceq.systems.speech_llm.ultravox_projector import TRAINING_IDS_FILE, TRAINING_TEXTS_FILE

__all__ = [
    "TRAINING_IDS_FILE",
    "TRAINING_TEXTS_FILE",
    "check_not_trained_on",
    "text_key",
    "training_ids",
    "training_keys",
    "write_training_ids",
    "write_training_keys",
]
KEY_HEX = 12
"""Hex digits of a text key: 48 bits, so a chance collision among ~10^4 x 10^4 pairs has odds ~10^-7."""


def text_key(text: str) -> str:
    """The key of a text: SHA-256 of its lower-cased words (punctuation and spacing dropped)."""
    norm = " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:KEY_HEX]


def write_training_keys(folder: str | Path, texts: Sequence[str]) -> Path:
    """Write the sorted unique keys of ``texts`` to ``folder/training_texts.txt``; returns the path."""
    path = Path(folder) / TRAINING_TEXTS_FILE
    keys = sorted({text_key(t) for t in texts if t.strip()})
    path.write_text("".join(k + "\n" for k in keys), encoding="utf-8")
    return path


def write_training_ids(folder: str | Path, task: str, ids: Sequence[str]) -> Path:
    """Add ``task:id`` lines for ``ids`` to ``folder/training_ids.txt`` (sorted, unique); returns the path."""
    path = Path(folder) / TRAINING_IDS_FILE
    old = set(path.read_text(encoding="utf-8").split()) if path.is_file() else set()
    keys = sorted(old | {f"{task}:{i}" for i in ids})
    path.write_text("".join(k + "\n" for k in keys), encoding="utf-8")
    return path


def training_ids(folder: str | Path) -> frozenset[str]:
    """The ``task:id`` keys shipped beside a checkpoint (empty when it ships none)."""
    path = Path(folder) / TRAINING_IDS_FILE
    return _keys(str(path), path.stat().st_mtime_ns) if path.is_file() else frozenset()


@lru_cache(maxsize=8)
def _keys(path: str, mtime: int) -> frozenset[str]:
    return frozenset(
        line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
    )


def training_keys(folder: str | Path) -> frozenset[str] | None:
    """The keys shipped beside a checkpoint (None when it ships none)."""
    path = Path(folder) / TRAINING_TEXTS_FILE
    return _keys(str(path), path.stat().st_mtime_ns) if path.is_file() else None


def check_not_trained_on(model_spec: str | None, examples: Sequence[Any]) -> None:
    """Refuse evaluated examples whose text the speech LLM's projector was trained on.

    Only native Ultravox checkpoints record their training text; other specs pass unchecked. A native checkpoint
    without the list is warned about (it cannot be checked), not refused.

    Raises:
        LeakageError: Naming how many evaluated items of which task were training text, and the checkpoint.
    """
    folder = native_folder(model_spec)
    if folder is None or not examples:
        return
    ids = training_ids(folder)
    clips = sorted({ex.id.split("@")[0] for ex in examples if f"{ex.task}:{ex.id.split('@')[0]}" in ids})
    if clips:
        raise LeakageError(
            f"{len(clips)} of the evaluated {examples[0].task} items are clips the speech LLM {model_spec} was "
            f'trained on (e.g. {clips[:3]}): evaluate held-out ones (ravdess: split = "test")',
            path=str(folder),
        )
    keys = training_keys(folder)
    if keys is None:
        warnings.warn(
            f"{model_spec}: no {TRAINING_TEXTS_FILE} beside the checkpoint, so its training text cannot be checked "
            "against the evaluated items",
            stacklevel=2,
        )
        return
    bases = {ex.id.split("@")[0]: ex for ex in examples if ex.text and ex.text.strip()}
    hits = sorted(i for i, ex in bases.items() if text_key(ex.text) in keys)
    if hits:
        task = examples[0].task
        raise LeakageError(
            f"{len(hits)} of the {len(bases)} evaluated {task} items are training text of the speech LLM "
            f"{model_spec} (e.g. {hits[:3]}): evaluate other items (another seed or n)",
            path=str(folder),
        )
