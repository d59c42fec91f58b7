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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from casceq.errors import InputError
from casceq.io.records import RecordError, from_record, to_record
from casceq.types import Prediction

MAX_ERRORS = 20
"""Stop reading after this many bad lines (one error message lists them all)."""

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


@dataclass(frozen=True)
class _Where:
    path: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


class _Checker:
    """Accumulates errors and the cross-record checks: unique keys, one gold per example, one backbone."""

    def __init__(self) -> None:
        self.errors: list[tuple[_Where, str]] = []
        self.keys: dict[tuple[str, str, str, str], _Where] = {}
        self.golds: dict[tuple[str, str], tuple[tuple[str, ...], _Where]] = {}
        self.backbones: dict[str, tuple[str, _Where]] = {}
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
    from casceq.run.store import STORE_FILENAME

    if path.is_dir():
        return (path / STORE_FILENAME).is_file()
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _read_jsonl(path: Path, check: _Checker) -> None:
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
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            check.error(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
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
    from casceq.run.store import Store
    from casceq.tasks import register_run_tasks

    if path.is_dir():
        register_run_tasks(path)  # a run of user-defined tasks names its tasks file in config.json

    with Store(path, read_only=True) as store:
        runs = [r.run for r in store.runs()] if run is None else [run]
        n = 0
        for name in runs:
            for p in store.predictions(run=name):
                check.add(p, (p.gold,), _Where(f"{store.path} (run {name!r})", None))
                n += 1
        if n == 0:
            check.error(_Where(str(store.path), None), f"no predictions{f' in run {run!r}' if run else ''}")


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
    return check.predictions


def iter_records(predictions: Iterable[Prediction]) -> Iterator[str]:
    """Yield the JSONL line (without newline) of each prediction, in order."""
    for p in predictions:
        yield json.dumps(to_record(p), ensure_ascii=False, separators=(", ", ": "))


def write_predictions(path: str | Path, predictions: Sequence[Prediction]) -> int:
    """Write predictions as interchange JSONL, atomically: a temporary file beside ``path``, then a rename.

    A reader never sees a half-written file, and a failure leaves any previous file at ``path`` untouched.

    Returns:
        The number of records written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
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
