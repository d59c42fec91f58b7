"""Attach natural-speech audio to examples from the official MELD and MUStARD release layouts.

Layouts (the files users download; MP4 video is decoded by ffmpeg when the audio is read):

- ``meld``: ``<folder>/dia{Dialogue_ID}_utt{Utterance_ID}.mp4|wav``, where ``<folder>`` is one split folder of
  ``MELD.Raw`` (e.g. ``output_repeated_splits_test`` for the test CSV, ``dev_splits_complete`` for dev).
- ``mustard``: ``<folder>/utterances_final/{id}.mp4|wav`` (``<folder>`` may also be ``utterances_final``
  itself), where ``id`` is the key of ``sarcasm_data.json``.

A file that is not there is recorded in :attr:`Attached.missing`, never a crash: the run evaluates the examples
that have audio and reports the rest. Licences: MELD is GPL-3.0, MUStARD MIT; the videos are clips of TV series.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from casceq.audio.io import is_silent, load_audio
from casceq.errors import InputError
from casceq.types import AudioRef, Example

LAYOUTS = ("meld", "mustard")
"""Supported release layouts."""

EXTENSIONS = (".wav", ".flac", ".mp4", ".m4a")
"""File types looked for, in order of preference (already-decoded audio first)."""

_MELD_ID = re.compile(r"dia(\d+)_utt(\d+)$|(\d+)[_-](\d+)$")


def _first(meta: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for k in keys:
        if meta.get(k) is not None:
            return meta[k]
    return None


def meld_stem(example: Example) -> str:
    """``dia{D}_utt{U}`` of a MELD example, from its meta (``Dialogue_ID``/``Utterance_ID``) or its id.

    Raises:
        InputError: Neither the meta nor the id carries dialogue and utterance numbers.
    """
    d = _first(example.meta, ("dialogue_id", "Dialogue_ID", "dialogue"))
    u = _first(example.meta, ("utterance_id", "Utterance_ID", "utterance"))
    if d is None or u is None:
        m = _MELD_ID.search(example.id)
        if m is None:
            raise InputError(f"MELD example {example.id!r} has no Dialogue_ID/Utterance_ID")
        d, u = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
    return f"dia{int(d)}_utt{int(u)}"


def mustard_stem(example: Example) -> str:
    """Return the ``sarcasm_data.json`` key of a MUStARD example (meta ``key``/``mustard_id``, else its id)."""
    return str(_first(example.meta, ("key", "mustard_id")) or example.id)


_STEMS: dict[str, Callable[[Example], str]] = {"meld": meld_stem, "mustard": mustard_stem}


def _folders(folder: Path, layout: str) -> list[Path]:
    if layout == "mustard":
        return [folder / "utterances_final", folder]
    return [folder]


def find_audio(folder: str | os.PathLike[str], stem: str, layout: str) -> Path | None:
    """Find the file of ``stem`` in ``folder`` under ``layout`` (first of :data:`EXTENSIONS` found), or None."""
    for base in _folders(Path(folder), layout):
        for ext in EXTENSIONS:
            p = base / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


@dataclass(frozen=True)
class Attached:
    """Result of :func:`attach_audio`; unpacks as ``examples, missing = attach_audio(...)``.

    Attributes:
        examples: The examples that have audio, in input order, with ``audio`` set.
        missing: Ids of examples without usable audio, in input order.
        reasons: Why each missing id is missing (``"no file"``, or the decode error with ``check=True``).
    """

    examples: tuple[Example, ...]
    missing: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.examples, self.missing))


def attach_audio(
    examples: Iterable[Example],
    folder: str | os.PathLike[str],
    layout: str,
    *,
    check: bool = False,
    stem_of: Callable[[Example], str] | None = None,
) -> Attached:
    """Point each example's ``audio`` at its file in an official release folder.

    Args:
        examples: Examples of the task (their text and labels are kept).
        folder: The user's release folder (see the module docstring for each layout).
        layout: ``"meld"`` or ``"mustard"``.
        check: Also decode each file (ffmpeg for MP4) and count unreadable, empty or silent ones as missing.
        stem_of: Override of how an example's file name (without extension) is derived.

    Returns:
        :class:`Attached` with the examples that have audio and the ids that do not.

    Raises:
        InputError: Unknown layout, or ``folder`` does not exist.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown audio layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{layout} audio folder not found", path=str(root))
    stem = stem_of or _STEMS[layout]
    found: list[Example] = []
    missing: list[str] = []
    reasons: dict[str, str] = {}
    for ex in examples:
        path = find_audio(root, stem(ex), layout)
        reason = "no file" if path is None else (_check(path) if check else None)
        if path is None or reason is not None:
            missing.append(ex.id)
            reasons[ex.id] = reason or "no file"
            continue
        found.append(replace(ex, audio=AudioRef(path=str(path.resolve()), voice="natural")))
    return Attached(tuple(found), tuple(missing), reasons)


def _check(path: Path) -> str | None:
    try:
        wav = load_audio(path)
    except InputError as exc:
        return str(exc)
    return "silent audio" if is_silent(wav) else None
