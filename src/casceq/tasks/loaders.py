"""Loaders of the official release formats (the files users download), one function per task.

Each ``load_<task>(data_dir, split)`` returns every example of one split in file order, with ids derived from the
source (row index in the file, the corpus's own id, or the audio file stem), so an id names the same item on
every machine. Bad rows raise ``InputError`` naming the file and line. Licences differ: AG News and SST-2 are for
research use, CommonsenseQA is MIT, TriviaQA Apache-2.0, MELD GPL-3.0, MUStARD MIT, RAVDESS CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.tasks._audio_header import audio_header
from casceq.tasks.defs import AG_NEWS_LABELS, MELD_LABELS, RAVDESS_LABELS
from casceq.types import AudioRef, Example

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp4", ".mp3")


def _file(folder: Path, name: str, task: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise InputError(f"{task}: expected the official file {name} in this folder", path=str(folder))
    return path


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON ({exc.msg})", path=str(path), line=line_no) from exc
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", path=str(path), line=line_no)
            yield line_no, obj


def _field(obj: dict[str, Any], key: str, kind: type, path: Path, line: int | None) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"missing or invalid field {key!r}", path=str(path), line=line)
    return value


def _natural_audio(path: Path) -> AudioRef:
    rate, duration = audio_header(path)
    return AudioRef(path=str(path.resolve()), sample_rate=rate, duration=duration, voice="natural")


def _audio_index(folders: list[Path]) -> dict[str, Path]:
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


def load_ag_news(folder: Path, split: str = "test") -> list[Example]:
    r"""AG News ``{split}.csv`` (no header; class 1-4, title, description) with ``classes.txt``.

    Text is ``title + ". " + description`` with the corpus's escapes ("#36;", "\\") kept as released.
    """
    classes_path = _file(folder, "classes.txt", "ag_news")
    classes = tuple(c.strip() for c in classes_path.read_text(encoding="utf-8").splitlines() if c.strip())
    if classes != AG_NEWS_LABELS:
        raise InputError(f"expected classes {AG_NEWS_LABELS}, found {classes}", path=str(classes_path))
    path = _file(folder, f"{split}.csv", "ag_news")
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for i, row in enumerate(reader):
            if len(row) != 3 or row[0].strip() not in {"1", "2", "3", "4"}:
                raise InputError(
                    "expected 3 fields: class 1-4, title, description", path=str(path), line=reader.line_num
                )
            title, desc = row[1].strip(), row[2].strip()
            out.append(
                Example(
                    id=f"ag_news-{split}-{i:06d}",
                    task="ag_news",
                    text=f"{title}. {desc}",
                    label=classes[int(row[0]) - 1],
                    meta={"title": title, "description": desc, "row": i},
                )
            )
    return out


def load_sst2(folder: Path, split: str = "dev") -> list[Example]:
    """GLUE SST-2 ``{split}.tsv`` (header ``sentence<TAB>label``; read with ``csv.QUOTE_NONE``)."""
    path = _file(folder, f"{split}.tsv", "sst2")
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["sentence", "label"]:
            raise InputError(
                f"expected the header 'sentence<TAB>label' (labelled GLUE split), got {header}",
                path=str(path),
                line=1,
            )
        for i, row in enumerate(reader):
            if len(row) != 2 or row[1].strip() not in {"0", "1"} or not row[0].strip():
                raise InputError("expected 'sentence<TAB>0|1'", path=str(path), line=reader.line_num)
            out.append(
                Example(
                    id=f"sst2-{split}-{i:06d}",
                    task="sst2",
                    text=row[0].strip(),
                    label="positive" if row[1].strip() == "1" else "negative",
                    meta={"row": i},
                )
            )
    return out


def load_csqa(folder: Path, split: str = "dev") -> list[Example]:
    """CommonsenseQA ``{split}_rand_split.jsonl`` (official Talmor et al. format)."""
    path = _file(folder, f"{split}_rand_split.jsonl", "csqa")
    out = []
    for line, obj in _jsonl(path):
        question = _field(obj, "question", dict, path, line)
        choices = _field(question, "choices", list, path, line)
        try:
            by_label = {c["label"]: str(c["text"]) for c in choices}
        except (TypeError, KeyError) as exc:
            raise InputError(
                "choices must be objects with 'label' and 'text'", path=str(path), line=line
            ) from exc
        if sorted(by_label) != ["A", "B", "C", "D", "E"] or len(choices) != 5:
            raise InputError(f"expected choices A-E, got {sorted(by_label)}", path=str(path), line=line)
        answer = _field(obj, "answerKey", str, path, line)
        if answer not in by_label:
            raise InputError(f"answerKey {answer!r} is not a choice label", path=str(path), line=line)
        out.append(
            Example(
                id=_field(obj, "id", str, path, line),
                task="csqa",
                text=_field(question, "stem", str, path, line).strip(),
                label=answer,
                choices=tuple(by_label[k] for k in "ABCDE"),
                meta={"question_concept": question.get("question_concept", "")},
            )
        )
    return out


def unwrap_trivia_question(context: str) -> tuple[str, str]:
    r"""Strip the ``Question: ...\nAnswer:`` wrapper and undo CSV double-quoting.

    About 200 TriviaQA questions are stored CSV-quoted (``"Who wrote ""Jabberwocky""?"``); the outer quotes
    and doubled inner quotes are removed so a voice does not read them. Returns (question, raw question).
    """
    q = context.strip()
    if q.startswith("Question:"):
        q = q[len("Question:") :]
    if q.endswith("Answer:"):
        q = q[: -len("Answer:")]
    raw = q.strip()
    q = raw
    if len(q) >= 2 and q[0] == '"' and q[-1] == '"' and q[1:-1].replace('""', "").count('"') == 0:
        q = q[1:-1].replace('""', '"').strip()
    return q, raw


def trivia_example(example_id: str, question: str, answer: str, aliases: list[str], raw: str) -> Example:
    """Build a TriviaQA example; aliases always include the answer value itself."""
    merged = tuple(dict.fromkeys([answer, *aliases]))
    return Example(
        id=example_id,
        task="triviaqa",
        text=question,
        label=answer,
        meta={"aliases": merged, "raw_question": raw},
    )


def load_triviaqa(folder: Path, split: str = "sm_sub") -> list[Example]:
    """TriviaQA JSON lines ``triviaqa_{split}.jsonl`` with ``context`` (or ``question``), ``answer``, ``aliases``."""
    path = _file(folder, f"triviaqa_{split}.jsonl", "triviaqa")
    out = []
    for i, (line, obj) in enumerate(_jsonl(path)):
        context = obj.get("context", obj.get("question"))
        if not isinstance(context, str) or not context.strip():
            raise InputError("missing field 'context' (or 'question')", path=str(path), line=line)
        aliases = _field(obj, "aliases", list, path, line)
        if not all(isinstance(a, str) for a in aliases):
            raise InputError("aliases must be strings", path=str(path), line=line)
        question, raw = unwrap_trivia_question(context)
        answer = _field(obj, "answer", str, path, line)
        out.append(trivia_example(f"triviaqa-{split}-{i:06d}", question, answer, aliases, raw))
    return out


_MELD_AUDIO_DIRS = {
    "test": ("output_repeated_splits_test", "test_splits"),
    "dev": ("dev_splits_complete", "dev_splits"),
    "train": ("train_splits",),
}


def load_meld(folder: Path, split: str = "test") -> list[Example]:
    """MELD ``{split}_sent_emo.csv`` (UTF-8); audio ``dia{D}_utt{U}.wav|flac|mp4`` when a split folder has it."""
    path = _file(folder, f"{split}_sent_emo.csv", "meld")
    dirs = [folder / d for d in _MELD_AUDIO_DIRS.get(split, ())] + [folder / split, folder / "audio" / split]
    audio = _audio_index(dirs)
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
                    audio=_natural_audio(wav) if wav else None,
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
    path = _file(folder, "sarcasm_data.json", "mustard")
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg})", path=str(path), line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object keyed by utterance id", path=str(path), line=1)
    audio = _audio_index([folder / "utterances_final", folder / "audio"])
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
                audio=_natural_audio(wav) if wav else None,
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


def load_ravdess(folder: Path, split: str = "all") -> list[Example]:
    """RAVDESS speech ``Actor_XX/03-01-EE-II-SS-RR-AA.flac|wav``; song files (vocal channel 02) are skipped.

    Labels come from the file name fields (emotion, intensity, statement, repetition, actor; odd actor = male).
    """
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
            if not (1 <= emotion <= 8 and intensity in (1, 2) and statement in (1, 2) and 1 <= actor <= 99):
                raise InputError("RAVDESS name fields out of range", path=str(path))
            out.append(
                Example(
                    id=stem,
                    task="ravdess",
                    text=RAVDESS_STATEMENTS[statement],
                    label=RAVDESS_LABELS[emotion - 1],
                    audio=_natural_audio(path),
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
LOCAL: dict[str, tuple[Any, str, tuple[str, ...] | None]] = {
    "ag_news": (load_ag_news, "test", None),
    "sst2": (load_sst2, "dev", None),
    "csqa": (load_csqa, "dev", None),
    "triviaqa": (load_triviaqa, "sm_sub", None),
    "meld": (load_meld, "test", ("test", "dev", "train")),
    "mustard": (load_mustard, "all", ("all",)),
    "ravdess": (load_ravdess, "all", ("all",)),
}
