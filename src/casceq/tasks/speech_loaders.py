"""Loaders of the speech corpora in their official layouts: MELD and MUStARD (text with optional audio) and RAVDESS.

MELD ``{split}_sent_emo.csv`` and MUStARD ``sarcasm_data.json`` carry the labels; their audio is attached when
the folder also holds the official clips (MELD ``dia{D}_utt{U}.wav|flac|mp4`` in a split folder, MUStARD
``utterances_final/{id}.wav|flac|mp4``). RAVDESS labels come from its file names. Licences: MELD GPL-3.0,
MUStARD MIT, RAVDESS CC BY-NC-SA 4.0 (attribution, non-commercial).

MELD ids are ``dia{D}_utt{U}``, the names of its audio files; they are unique within a split but repeat across
splits (``meta["split"]`` tells them apart), so one experiment should use one MELD split.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.tasks._files import audio_index, natural_audio, need_file
from casceq.tasks.defs import MELD_LABELS, RAVDESS_LABELS
from casceq.types import Example

_MELD_AUDIO_DIRS = {
    "test": ("output_repeated_splits_test", "test_splits"),
    "dev": ("dev_splits_complete", "dev_splits"),
    "train": ("train_splits",),
}


def load_meld(folder: Path, split: str = "test") -> list[Example]:
    """MELD ``{split}_sent_emo.csv`` (UTF-8); audio ``dia{D}_utt{U}.wav|flac|mp4`` when a split folder has it."""
    path = need_file(folder, f"{split}_sent_emo.csv", "meld")
    dirs = [folder / d for d in _MELD_AUDIO_DIRS.get(split, ())] + [folder / split, folder / "audio" / split]
    audio = audio_index(dirs)
    out = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        needed = {"Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID"}
        if not needed <= set(reader.fieldnames or ()):
            raise InputError(
                f"missing columns {sorted(needed - set(reader.fieldnames or ()))}", path=str(path), line=1
            )
        for row in reader:
            emotion = (row["Emotion"] or "").strip().lower()
            d, u = (row["Dialogue_ID"] or "").strip(), (row["Utterance_ID"] or "").strip()
            if (
                emotion not in MELD_LABELS
                or not d.isdigit()
                or not u.isdigit()
                or not (row["Utterance"] or "").strip()
            ):
                raise InputError(
                    "bad row (emotion, Dialogue_ID, Utterance_ID or Utterance)",
                    path=str(path),
                    line=reader.line_num,
                )
            ex_id = f"dia{int(d)}_utt{int(u)}"
            meta = {k: (row.get(c) or "").strip() for k, c in _MELD_META.items()}
            meta["split"] = split
            wav = audio.get(ex_id)
            out.append(
                Example(
                    id=ex_id,
                    task="meld",
                    text=row["Utterance"].strip(),
                    label=emotion,
                    audio=natural_audio(wav) if wav else None,
                    meta=meta,
                )
            )
    return out


_MELD_META = {
    "speaker": "Speaker",
    "sentiment": "Sentiment",
    "dialogue_id": "Dialogue_ID",
    "utterance_id": "Utterance_ID",
    "season": "Season",
    "episode": "Episode",
    "start_time": "StartTime",
    "end_time": "EndTime",
}


def load_mustard(folder: Path, split: str = "all") -> list[Example]:
    """MUStARD ``sarcasm_data.json`` (id = key); audio ``utterances_final/{id}.wav|flac|mp4`` when present."""
    path = need_file(folder, "sarcasm_data.json", "mustard")
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg})", path=str(path), line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object keyed by utterance id", path=str(path), line=1)
    audio = audio_index([folder / "utterances_final", folder / "audio"])
    out = []
    for key, item in data.items():
        # The line of an entry is only worked out for an error message (a scan of the whole file).
        line = raw.count("\n", 0, max(raw.find(f'"{key}"'), 0)) + 1 if not _mustard_ok(item) else None
        if line is not None:
            raise InputError(
                f"entry {key!r}: needs a boolean 'sarcasm' and an 'utterance'", path=str(path), line=line
            )
        utterance = item["utterance"]
        wav = audio.get(key)
        out.append(
            Example(
                id=key,
                task="mustard",
                text=utterance.strip(),
                label="sarcastic" if item["sarcasm"] else "not sarcastic",
                audio=natural_audio(wav) if wav else None,
                meta={
                    "speaker": item.get("speaker", ""),
                    "context": tuple(item.get("context") or ()),
                    "context_speakers": tuple(item.get("context_speakers") or ()),
                    "show": item.get("show", ""),
                },
            )
        )
    return out


def _mustard_ok(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("sarcasm"), bool)
        and isinstance(item.get("utterance"), str)
        and bool(item["utterance"].strip())
    )


RAVDESS_STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}


ACTOR_SPLITS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(1, 25)),
    "train": tuple(range(1, 17)),
    "test": tuple(range(17, 25)),
}
"""casceq's actor-disjoint RAVDESS split (the corpus has none): actors 1-16 (8 male, 8 female) may be trained
on (the acoustic control, ``casceq.train.emotion``), 17-24 (4 and 4) are held out for evaluation."""


def load_ravdess(folder: Path, split: str = "all") -> list[Example]:
    """RAVDESS speech ``Actor_XX/03-01-EE-II-SS-RR-AA.flac|wav``; song files (vocal channel 02) are skipped.

    Labels come from the file name fields (emotion, intensity, statement, repetition, actor; odd actor = male).
    ``split`` picks actors (``ACTOR_SPLITS``); an actor folder outside 1-24 belongs to ``"all"`` only.
    """
    if split not in ACTOR_SPLITS:
        raise InputError(
            f"ravdess: split must be one of {sorted(ACTOR_SPLITS)}, not {split!r}", path=str(folder)
        )
    actors = sorted(p for p in folder.glob("Actor_*") if p.is_dir())
    if not actors:
        raise InputError("ravdess: expected Actor_01 ... Actor_24 folders", path=str(folder))
    out = []
    for actor_dir in actors:
        for name in sorted(os.listdir(actor_dir)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in (".flac", ".wav"):
                continue
            fields = stem.split("-")
            path = actor_dir / name
            if len(fields) != 7 or not all(len(x) == 2 and x.isdigit() for x in fields):
                raise InputError("expected a RAVDESS name MM-VV-EE-II-SS-RR-AA", path=str(path))
            _modality, channel, emotion, intensity, statement, repetition, actor = map(int, fields)
            if channel == 2:
                continue  # song, not speech
            if split != "all" and actor not in ACTOR_SPLITS[split]:
                continue
            if not (1 <= emotion <= 8 and intensity in (1, 2) and statement in (1, 2) and 1 <= actor <= 99):
                raise InputError("RAVDESS name fields out of range", path=str(path))
            out.append(
                Example(
                    id=stem,
                    task="ravdess",
                    text=RAVDESS_STATEMENTS[statement],
                    label=RAVDESS_LABELS[emotion - 1],
                    audio=natural_audio(path),
                    meta={
                        "actor": actor,
                        "sex": "male" if actor % 2 else "female",
                        "intensity": "strong" if intensity == 2 else "normal",
                        "statement": statement,
                        "repetition": repetition,
                    },
                )
            )
    return out


# name -> (loader, default split, allowed splits or None for any file name).
