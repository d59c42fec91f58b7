"""Everything a report reads, gathered once: predictions, run config, system kinds, texts, audio, row locations.

Inputs are a run folder (``config.json``, ``store.sqlite``, ``predictions.jsonl``, ``audio/<task>/``) or any
set of interchange JSONL files and stores. Example texts and audio durations come from synthesis manifests
(``audio/<task>/manifest.jsonl`` of the run, or folders given with ``--audio``); without them the sections
that need them say so. Voiced item ids are ``"{example_id}@{voice}"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.types import Prediction

Key = tuple[str, str, str, str]
"""(system, task, condition, example_id): one prediction row."""


@dataclass(frozen=True)
class ItemAudio:
    """The clean audio of one evaluated item: absolute path, duration in seconds (None if unknown).

    ``where`` is the manifest line that named it (``manifest.jsonl:3``), for messages.
    """

    path: str
    duration: float | None
    where: str = ""


@dataclass(frozen=True)
class Expected:
    """What the run's config asked for (to say what is missing): system names, task names, conditions."""

    systems: tuple[str, ...]
    tasks: tuple[str, ...]
    conditions: tuple[str, ...]


@dataclass(frozen=True)
class ReportData:
    """The inputs of one report.

    Attributes:
        predictions: Every prediction row.
        title: What the report is of (the run name, or the input file names).
        root: The run folder, or None for a set of files.
        expected: What the config asked for, or None without a config.
        kinds: System kind by name (``cascade``, ``speech_llm``, ``text``).
        backbones: LLM backbone by system name (None if undeclared).
        texts: ``(task, example_id) -> (original text, spoken text)`` of base examples.
        audio: ``(task, item_id) -> ItemAudio``.
        locations: Row key -> ``(file, line or None)`` where the row can be read.
        seed: Bootstrap seed (from the config, else 0).
        n_bootstrap: Bootstrap resamples (from the config, else 1000).
        notes: Remarks gathered while loading.
    """

    predictions: tuple[Prediction, ...]
    title: str
    root: Path | None
    expected: Expected | None
    kinds: Mapping[str, str]
    backbones: Mapping[str, str | None]
    texts: Mapping[tuple[str, str], tuple[str, str]]
    audio: Mapping[tuple[str, str], ItemAudio]
    locations: Mapping[Key, tuple[str, int | None]]
    seed: int = 0
    n_bootstrap: int = 1000
    notes: tuple[str, ...] = field(default=())

    @property
    def systems(self) -> tuple[str, ...]:
        """System names in order of first appearance."""
        return tuple(dict.fromkeys(p.system for p in self.predictions))

    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names in order of first appearance."""
        return tuple(dict.fromkeys(p.task for p in self.predictions))

    @property
    def conditions(self) -> tuple[str, ...]:
        """Condition names in order of first appearance."""
        return tuple(dict.fromkeys(p.condition for p in self.predictions))

    def text_of(self, task: str, example_id: str) -> tuple[str, str] | None:
        """(original, spoken) text of an item (voiced or not), or None when no manifest gave it."""
        return self.texts.get((task, base_id(example_id)))


def base_id(example_id: str) -> str:
    """Return the task example id of an item id (``"sst2-1@piper-joe"`` -> ``"sst2-1"``)."""
    return example_id.split("@", 1)[0]


def _canonical_task(name: str) -> str:
    from casceq.tasks import canonical_name

    try:
        return canonical_name(name)
    except InputError:
        return name


def jsonl_locations(path: Path, label: str | None = None) -> dict[Key, tuple[str, int | None]]:
    """Map each record of an interchange file to ``(label or path, line)``; unparsable records are skipped."""
    from casceq.io.records import RecordError, canonical_condition

    out: dict[Key, tuple[str, int | None]] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                r = json.loads(line)
                key = (
                    r["system"],
                    _canonical_task(r["task"]),
                    canonical_condition(r.get("condition") or "clean"),
                    str(r["example_id"]),
                )
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError, RecordError):
                continue
            out[key] = (label or str(path), number)
    return out


def _manifest_dirs(root: Path | None, audio_dirs: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for d in ([root / "audio"] if root else []) + list(audio_dirs):
        if (d / "manifest.jsonl").is_file():
            found.append(d)
        elif d.is_dir():
            found += sorted(p.parent for p in d.glob("*/manifest.jsonl"))
        elif d not in ([root / "audio"] if root else []):
            raise InputError("no such audio folder", path=str(d))
    return found


def load_manifests(
    dirs: Sequence[Path], roots: Sequence[Path] = ()
) -> tuple[dict[tuple[str, str], tuple[str, str]], dict[tuple[str, str], ItemAudio]]:
    """Read synthesis manifests: texts by (task, example id) and audio by (task, item id).

    A manifest is data someone else may have written, and the report embeds the audio it names. So a path
    must lead (after resolving ``..`` and symbolic links) to an existing file under the manifest's own folder
    or under one of ``roots`` (``report --audio-root``); the explorer then embeds it only if it decodes as
    audio (:func:`casceq.report.explorer.encode_clip`).

    Raises:
        InputError: A malformed manifest line, or a path outside the allowed folders or to no file (each
            named by manifest file and line).
    """
    from casceq.audio.tts.manifest import MANIFEST_NAME, Manifest

    texts: dict[tuple[str, str], tuple[str, str]] = {}
    audio: dict[tuple[str, str], ItemAudio] = {}
    allowed = [r.resolve() for r in roots]
    for d in dirs:
        try:
            m = Manifest.load(d)
            lines = _entry_lines(d / MANIFEST_NAME)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise InputError(f"unreadable synthesis manifest or summary ({exc})", path=str(d)) from exc
        for e, line in zip(m.entries, lines, strict=True):
            where = f"{d / MANIFEST_NAME}:{line}"
            _check_entry(e, where)
            task = _canonical_task(e.task)
            texts.setdefault((task, e.example_id), (e.text, e.spoken_text))
            item = ItemAudio(str(_allowed_audio(d, e.path, allowed, where)), e.duration, where)
            audio[(task, f"{e.example_id}@{e.voice}")] = item
            audio.setdefault((task, e.example_id), item)
    return texts, audio


def _check_entry(e: Any, where: str) -> None:
    """A manifest entry's fields have the types the report relies on (JSON does not promise them)."""
    for name in ("example_id", "task", "voice", "path", "text", "spoken_text"):
        if not isinstance(getattr(e, name), str):
            raise InputError(f"field {name!r} must be a string, got {getattr(e, name)!r}", path=where)
    d = e.duration
    if isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d < float("inf"):
        raise InputError(f"field 'duration' must be a finite number >= 0, got {d!r}", path=where)


def _entry_lines(manifest: Path) -> list[int]:
    """Line numbers of the entries of a manifest file (``Manifest.load`` skips blank lines)."""
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8") as fh:
        return [n for n, line in enumerate(fh, start=1) if line.strip()]


def _allowed_audio(folder: Path, name: str, roots: Sequence[Path], where: str) -> Path:
    path = (folder / name).resolve()  # an absolute name replaces folder; ".." and symlinks are resolved
    inside = [folder.resolve(), *roots]
    if not any(path.is_relative_to(r) for r in inside):
        raise InputError(
            f"audio path {name!r} leads to {path}, outside the manifest's folder {folder.resolve()}: refused "
            "(name another folder to read audio from with --audio-root)",
            path=where,
        )
    if not path.is_file():
        raise InputError(f"audio file not found: {path}", path=where)
    return path


def _run_config(root: Path) -> dict[str, Any] | None:
    meta = root / "config.json"
    if not meta.is_file():
        return None
    try:
        return dict(json.loads(meta.read_text(encoding="utf-8")).get("config") or {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise InputError(f"unreadable run config ({exc})", path=str(meta)) from exc


def _registered(paths: Sequence[Path], run: str | None) -> dict[str, tuple[str | None, str | None]]:
    """(backbone, kind) of systems registered in the stores among ``paths``."""
    from casceq.io.interchange import is_store
    from casceq.io.store import Store

    out: dict[str, tuple[str | None, str | None]] = {}
    for p in paths:
        if is_store(p):
            with Store(p, read_only=True) as store:
                for s in store.systems(run):
                    out.setdefault(s.name, (s.backbone, s.kind))
    return out


def load_report_data(
    inputs: Sequence[str | Path],
    *,
    audio_dirs: Sequence[str | Path] = (),
    run: str | None = None,
    audio_roots: Sequence[str | Path] = (),
) -> ReportData:
    """Read a run folder or a set of interchange files/stores, with manifests, config and row locations.

    Args:
        inputs: One run folder, or interchange JSONL files, stores and run folders.
        audio_dirs: Extra synthesis output folders (a folder with ``manifest.jsonl``, or one of task folders).
        audio_roots: Folders besides each manifest's own that its audio paths may lead into.
        run: Read only this run from stores (default: the run folder's run, else all).

    Raises:
        InputError: Unreadable inputs (named by file and line), or no predictions.
    """
    from casceq.io.interchange import read_predictions
    from casceq.stats.align import system_info
    from casceq.stats.compare import KINDS, infer_kinds

    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no inputs given")
    root = paths[0] if len(paths) == 1 and (paths[0] / "config.json").is_file() else None
    cfg = _run_config(root) if root else None
    if cfg and run is None:
        run = cfg.get("name")
    preds = read_predictions(paths, run=run)
    locations: dict[Key, tuple[str, int | None]] = {}
    for p in paths:
        jsonl = p / "predictions.jsonl" if p.is_dir() else p
        if jsonl.is_file() and jsonl.suffix == ".jsonl":
            # Inside a run folder, name files relative to it (the report says so): shorter and movable.
            label = jsonl.relative_to(root).as_posix() if root and jsonl.is_relative_to(root) else None
            locations.update(jsonl_locations(jsonl, label))
    for pred in preds:
        key = (pred.system, pred.task, pred.condition, pred.example_id)
        locations.setdefault(key, (str(paths[0]), None))
    dirs = _manifest_dirs(root, [Path(d) for d in audio_dirs])
    texts, audio = load_manifests(dirs, [Path(r) for r in audio_roots])
    registered = _registered(paths, run)
    declared: dict[str, str] = {}
    expected = None
    if cfg:
        specs = cfg.get("systems") or []
        declared = {s["name"]: s["kind"] for s in specs if s.get("kind")}
        tasks = [t["name"] if isinstance(t, dict) else str(t) for t in cfg.get("tasks") or []]
        expected = Expected(tuple(s["name"] for s in specs), tuple(tasks), tuple(cfg.get("conditions") or ()))
    for name, (_, kind) in registered.items():
        if kind in KINDS and name not in declared:  # interchange imports register kind 'imported'
            declared[name] = kind
    info = system_info(preds)
    declared = {k: v for k, v in declared.items() if k in info}
    kinds, kind_note = infer_kinds(info, declared)
    backbones = {name: i.backbone or registered.get(name, (None, None))[0] for name, i in info.items()}
    title = str(cfg.get("name")) if cfg and cfg.get("name") else ", ".join(p.name for p in paths)
    return ReportData(
        predictions=tuple(preds),
        title=title,
        root=root,
        expected=expected,
        kinds=kinds,
        backbones=backbones,
        texts=texts,
        audio=audio,
        locations=locations,
        seed=int(cfg.get("seed", 0)) if cfg else 0,
        n_bootstrap=int(cfg.get("bootstrap", 1000)) if cfg else 1000,
        notes=(kind_note,),
    )
