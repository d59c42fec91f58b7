"""Interchange JSONL: read predictions from files (or stores) with full validation, write them atomically.

Reading validates *everything* before returning anything, and reports every bad line it finds (up to
``MAX_ERRORS``) in one ``InputError`` whose ``path``/``line`` are those of the first; a caller that writes only
after ``read_predictions`` returned can never half-import a file. The format is described in
``docs/interchange.md``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from casceq.errors import InputError
from casceq.io.records import RecordError, canonical_condition, from_record, to_record
from casceq.io.store import STORE_FILENAME, Store
from casceq.jsonlines import DuplicateKey, no_duplicate_keys
from casceq.tasks import register_run_tasks
from casceq.types import Prediction

MAX_ERRORS = 20
"""Stop reading after this many bad lines (one error message lists them all)."""

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

SQLITE_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db"})
"""File suffixes that mean "a store": such a file without the SQLite header is refused as one."""


@dataclass(frozen=True)
class _Where:
    path: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


class _Checker:
    """Accumulates errors and the cross-record checks: unique keys, one gold and item per example, one backbone."""

    def __init__(self) -> None:
        self.errors: list[tuple[_Where, str]] = []
        self.keys: dict[tuple[str, str, str, str], _Where] = {}
        self.golds: dict[tuple[str, str], tuple[tuple[str, ...], _Where]] = {}
        self.backbones: dict[str, tuple[str, _Where]] = {}
        self.items: dict[tuple[str, str], tuple[str, _Where]] = {}
        self.predictions: list[Prediction] = []

    def error(self, where: _Where, message: str) -> None:
        self.errors.append((where, message))
        if len(self.errors) >= MAX_ERRORS:
            raise self.as_error()

    def add(self, p: Prediction, gold: tuple[str, ...], where: _Where) -> None:
        key = (p.system, p.task, p.condition, p.example_id)
        if key in self.keys:
            return self.error(where, f"duplicate prediction for (system, task, condition, example_id) = "
                                     f"{key}, first given at {self.keys[key]}")  # fmt: skip
        seen = self.golds.setdefault((p.task, p.example_id), (gold, where))
        if seen[0] != gold:
            return self.error(where, f"gold {_show(gold)} of {p.task} example {p.example_id!r} differs from "
                                     f"gold {_show(seen[0])} given at {seen[1]}")  # fmt: skip
        if p.item is not None:
            it = self.items.setdefault((p.task, p.example_id), (p.item, where))
            if it[0] != p.item:
                return self.error(where, f"item {p.item!r} of {p.task} example {p.example_id!r} differs from "
                                         f"item {it[0]!r} given at {it[1]}")  # fmt: skip
        if p.backbone is not None:
            bb = self.backbones.setdefault(p.system, (p.backbone, where))
            if bb[0] != p.backbone:
                return self.error(where, f"system {p.system!r} has backbone {p.backbone!r} here but "
                                         f"{bb[0]!r} at {bb[1]}")  # fmt: skip
        self.keys[key] = where
        self.predictions.append(p)

    def as_error(self) -> InputError:
        (first, message), rest = self.errors[0], self.errors[1:]
        more = "".join(f"\n  {w}: {m}" for w, m in rest)
        cut = " (stopped reading here)" if len(self.errors) >= MAX_ERRORS else ""
        if rest:
            more = f"\n{len(rest)} more error(s){cut}:" + more
        return InputError(message + more, path=first.path, line=first.line)


def _show(gold: tuple[str, ...]) -> str:
    return repr(gold[0]) if len(gold) == 1 else repr(list(gold))


def is_store(path: Path) -> bool:
    """Whether ``path`` is a store: a run folder holding ``store.sqlite``, or an SQLite file."""
    if path.is_dir():
        return (path / STORE_FILENAME).is_file()
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _read_jsonl(path: Path, check: _Checker) -> None:
    if path.suffix.lower() in SQLITE_SUFFIXES:
        # is_store() said no: the SQLite header is missing, so this is no database (say so, not "not UTF-8").
        check.error(_Where(str(path), None), "not an SQLite database (no SQLite header), nor a casceq store")
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from exc
    before = len(check.predictions) + len(check.errors)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) carry nothing
        where = _Where(str(path), number)
        try:
            record = json.loads(line, object_pairs_hook=no_duplicate_keys)
        except json.JSONDecodeError as exc:
            check.error(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except DuplicateKey as exc:
            check.error(where, str(exc))
            continue
        try:
            pred, gold = from_record(record)
        except RecordError as exc:
            check.error(where, str(exc))
            continue
        check.add(pred, gold, where)
    if len(check.predictions) + len(check.errors) == before:
        check.error(_Where(str(path), None), "empty file: no prediction records")


def _read_store(path: Path, run: str | None, check: _Checker) -> None:
    if path.is_dir():
        register_run_tasks(path)  # a run of user-defined tasks names its tasks file in config.json

    with Store(path, read_only=True) as store:
        runs = [r.run for r in store.runs() if r.n_predictions] if run is None else [run]
        rows = {name: store.predictions(run=name) for name in runs}
    if run is None and _runs_collide(rows):
        names = ", ".join(runs)
        message = f"the store holds runs {names} with predictions of the same systems and examples"
        check.error(_Where(str(store.path), None), message + ": choose one with --run")
        return
    for name, preds in rows.items():
        where = _Where(f"{store.path} (run {name!r})", None)
        for p in preds:
            try:  # rows imported before conditions were normalised may still carry another spelling
                p = replace(p, condition=canonical_condition(p.condition))
            except RecordError as exc:
                check.error(where, f"{p.system} / {p.task} / {p.example_id}: {exc}")
                continue
            check.add(p, (p.gold,), where)
    if not any(rows.values()):
        check.error(_Where(str(store.path), None), f"no predictions{f' in run {run!r}' if run else ''}")


def _runs_collide(rows: dict[str, list[Prediction]]) -> bool:
    """Whether two runs hold a prediction of the same (system, task, condition, example_id)."""
    seen: set[tuple[str, str, str, str]] = set()
    for preds in rows.values():
        keys = {(p.system, p.task, p.condition, p.example_id) for p in preds}
        if seen & keys:
            return True
        seen |= keys
    return False


def read_predictions(paths: str | Path | Iterable[str | Path], *, run: str | None = None) -> list[Prediction]:
    """Read and validate predictions from interchange JSONL files, stores or run folders.

    Args:
        paths: One path or several. A directory must hold ``store.sqlite``; an SQLite file is read as a store;
            anything else as interchange JSONL.
        run: Read only this run from stores (default: all runs; their keys must not collide).

    Returns:
        Predictions in file order, then line order.

    Raises:
        InputError: Any bad line or inconsistency, naming the file and line (all problems found are listed).
    """
    return list(_read(paths, run).predictions)


def _read(paths: str | Path | Iterable[str | Path], run: str | None) -> _Checker:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise InputError("no input files given")
    check = _Checker()
    for item in map(Path, items):
        if not item.exists():
            check.error(_Where(str(item), None), "no such file or folder")
        elif is_store(item):
            _read_store(item, run, check)
        elif item.is_dir():
            check.error(_Where(str(item), None), "a folder without store.sqlite")
        else:
            _read_jsonl(item, check)
    if check.errors:
        raise check.as_error()
    return check


@dataclass(frozen=True)
class ImportRows:
    """Validated predictions to import, each with the file and line it came from."""

    predictions: tuple[Prediction, ...]
    where: tuple[_Where, ...]


def read_for_import(paths: str | Path | Iterable[str | Path]) -> ImportRows:
    """Read and validate like :func:`read_predictions`, keeping each row's file and line for :func:`check_import`."""
    check = _read(paths, None)
    keys = [(p.system, p.task, p.condition, p.example_id) for p in check.predictions]
    return ImportRows(tuple(check.predictions), tuple(check.keys[k] for k in keys))


def rows_from(predictions: Sequence[Prediction], sources: Sequence[str]) -> ImportRows:
    """Rows read by another reader (a harness log), each named by its source file for :func:`check_import`."""
    return ImportRows(tuple(predictions), tuple(_Where(src, None) for src in sources))


def check_import(
    rows: ImportRows, stored: Sequence[Prediction], backbones: Mapping[str, str | None], store: str
) -> None:
    """Check new rows against a run's stored rows: the same checks as within one call of ``read_predictions``.

    A new row replaces the stored row of its (system, task, condition, example_id); the run as it would be
    after the import must then hold one gold per example and one backbone per system, also against the
    backbones registered for its systems.

    Args:
        rows: From :func:`read_for_import`.
        stored: The run's stored predictions.
        backbones: Registered backbone by system name (None if none declared).
        store: How to name the store (and run) in messages.

    Raises:
        InputError: The first conflicts, each naming the new row's file and line and the stored side.
    """
    check = _Checker()
    new = {(p.system, p.task, p.condition, p.example_id) for p in rows.predictions}
    registered = _Where(f"{store}, registered system", None)
    for name, backbone in backbones.items():
        if backbone is not None:
            check.backbones[name] = (backbone, registered)
    at_store = _Where(store, None)
    for p in stored:
        if (p.system, p.task, p.condition, p.example_id) not in new:
            check.add(p, (p.gold,), at_store)
    for p, where in zip(rows.predictions, rows.where, strict=True):
        # Only the first gold alias is stored: compare that (the files' alias lists were checked on reading).
        check.add(p, (p.gold,), where)
    if check.errors:
        raise check.as_error()


def iter_records(predictions: Iterable[Prediction]) -> Iterator[str]:
    """Yield the JSONL line (without newline) of each prediction, in order."""
    for p in predictions:
        yield json.dumps(to_record(p), ensure_ascii=False, separators=(", ", ": "))


def write_predictions(path: str | Path, predictions: Sequence[Prediction]) -> int:
    """Write predictions as interchange JSONL, atomically: a temporary file beside ``path``, then a rename.

    A reader never sees a half-written file, and a failure leaves any previous file at ``path`` untouched.

    Returns:
        The number of records written.

    Raises:
        InputError: ``path`` is a folder, or a prediction cannot be written as a record.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError("is a folder: give the path of the .jsonl file to write", path=str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder of the path should be
        raise InputError(
            f"cannot create the folder {target.parent} ({exc.strerror})", path=str(target)
        ) from exc
    try:
        lines = [line + "\n" for line in iter_records(predictions)]
    except RecordError as exc:
        raise InputError(f"cannot export: {exc}", path=str(target)) from exc
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; an exported file is meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(lines)
