"""The prediction store: one SQLite file per run folder, append-only, resumable, crash-safe.

One row per (run, system, task, condition, example_id). Writes come in batches, one transaction each, so a
process killed at any instant loses at most the batch it was writing; reopening never duplicates a row (the
5-tuple is UNIQUE). ``done()`` tells a resuming runner which examples are finished and under which cache key.

Durability: WAL journal with ``synchronous=FULL``. With WAL, ``NORMAL`` already survives a killed *process*
(the WAL is in the OS page cache), but after a power loss or kernel crash it may drop the last committed
batches. ``FULL`` fsyncs the WAL at every commit, so a batch the runner saw committed is on disk. It costs one
fsync per batch, small beside the seconds of model time a batch takes, and lost predictions cost model time.

Migration: the ``item`` column (which underlying item a row was made from) came after schema version 1 was
released. It is an additive, nullable column, so the version stays 1: opening an older file for writing adds
the column (existing rows get NULL, i.e. each example is its own item), and a read-only open of such a file
reads NULL for it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.types import Prediction

SCHEMA_VERSION = 1
"""Version of the table layout below; bumped on every incompatible change (older files are migrated)."""

STORE_FILENAME = "store.sqlite"
"""The store's file name inside a run folder."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, config_json TEXT NOT NULL, config_hash TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS systems (
    run TEXT NOT NULL, name TEXT NOT NULL, backbone TEXT, kind TEXT, config_json TEXT NOT NULL,
    PRIMARY KEY (run, name));
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL, system TEXT NOT NULL, task TEXT NOT NULL, condition TEXT NOT NULL,
    example_id TEXT NOT NULL,
    backbone TEXT, transcript TEXT, output TEXT NOT NULL, label TEXT NOT NULL, gold TEXT NOT NULL,
    correct INTEGER, label_scores TEXT, seconds REAL NOT NULL, cache_key TEXT NOT NULL,
    created_at TEXT NOT NULL, item TEXT,
    UNIQUE (run, system, task, condition, example_id));
CREATE TABLE IF NOT EXISTS input_failures (
    run TEXT NOT NULL, system TEXT NOT NULL, task TEXT NOT NULL, condition TEXT NOT NULL,
    example_id TEXT NOT NULL, error TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (run, system, task, condition, example_id));
"""
# input_failures (added within schema version 1: older files gain the table when opened for writing; an older
# casceq ignores it) holds examples whose input could not be used: they are not predictions, never enter the
# statistics, and are retried by the next start of the run.

# Insert, or replace a row whose cache key differs (write_batch skips rows with the same cache key). An
# upsert, not INSERT OR REPLACE: the row keeps its id, so predictions() keeps the order of first insertion.
_UPSERT = """
INSERT INTO predictions (run, system, task, condition, example_id, backbone, transcript, output, label, gold,
                         correct, label_scores, seconds, item, cache_key, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run, system, task, condition, example_id) DO UPDATE SET
    backbone = excluded.backbone, transcript = excluded.transcript, output = excluded.output,
    label = excluded.label, gold = excluded.gold, correct = excluded.correct,
    label_scores = excluded.label_scores, seconds = excluded.seconds, item = excluded.item,
    cache_key = excluded.cache_key,
    created_at = excluded.created_at
"""

_FIELDS = ("system", "task", "condition", "example_id", "output", "label", "gold", "transcript", "label_scores",
           "seconds", "backbone", "correct", "item")  # fmt: skip
_COLUMNS = ", ".join(_FIELDS)
_COLUMNS_V1 = _COLUMNS.replace(", item", ", NULL AS item")
"""What a read-only open selects from a file written before the ``item`` column existed."""


@dataclass(frozen=True)
class WriteResult:
    """What one ``write_batch`` did: rows inserted, stale rows replaced, identical rows skipped."""

    inserted: int
    replaced: int
    skipped: int


@dataclass(frozen=True)
class InputFailure:
    """An example a system could not be given (unreadable, empty or non-finite audio): not a prediction."""

    system: str
    task: str
    condition: str
    example_id: str
    error: str


@dataclass(frozen=True)
class RunInfo:
    """One registered run: its name, config (as saved), config hash, creation time and prediction count."""

    run: str
    config: Mapping[str, Any]
    config_hash: str | None
    created_at: str
    n_predictions: int


@dataclass(frozen=True)
class SystemInfo:
    """One registered system of a run: its backbone decides which systems form matched pairs."""

    run: str
    name: str
    backbone: str | None
    kind: str | None
    config: Mapping[str, Any]


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a config (sorted keys, no whitespace): equal configs, equal hashes."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _as_mapping(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if is_dataclass(config) and not isinstance(config, type):
        return asdict(config)
    return dict(config)


class Store:
    """A SQLite prediction store (use as a context manager, or call ``close()``).

    Args:
        path: The ``.sqlite`` file, or a run folder (then ``<folder>/store.sqlite``): an existing folder, or a
            new path without a file suffix. Created if missing, unless ``read_only``.
        read_only: Open without creating or writing anything.

    Raises:
        InputError: The file is not a casceq store, or has a newer schema than this version supports.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        p = Path(path)
        # A folder (existing, or a new path without a suffix) means the run folder's store.
        if p.is_dir() or (not p.exists() and not p.suffix):
            p = p / STORE_FILENAME
        self.path = p
        self.read_only = read_only
        if read_only:
            if not p.is_file():
                raise InputError("no such store", path=str(p))
            self._db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly one transaction.
            self._db = sqlite3.connect(p, isolation_level=None, timeout=60.0)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InputError(f"not a readable SQLite store ({exc})", path=str(p)) from exc

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 60000")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise InputError("an SQLite file but not a casceq store (no meta table)", path=str(self.path))
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise InputError(
                    f"store schema version {version} is newer than this casceq supports ({SCHEMA_VERSION}); "
                    "upgrade casceq to read it",
                    path=str(self.path),
                )
            if version < 1:
                raise InputError(f"store has no valid schema version ({row})", path=str(self.path))
        self._columns = _COLUMNS
        if self.read_only:
            if not tables:
                raise InputError("empty file, not a casceq store", path=str(self.path))
            if "predictions" in tables and not self._has_item_column():
                self._columns = _COLUMNS_V1
            return
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        with self._transaction():
            # Statement by statement: executescript() would COMMIT first and leave our transaction.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            if not self._has_item_column():
                db.execute("ALTER TABLE predictions ADD COLUMN item TEXT")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _has_item_column(self) -> bool:
        return any(r[1] == "item" for r in self._db.execute("PRAGMA table_info(predictions)"))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every write inside the block one transaction (all or nothing), under the write lock from the start.

        Reads inside see exactly what the writes will be added to (``casceq import`` checks, then writes).
        """
        with self._transaction():
            yield

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._db.in_transaction:  # inside transaction(): part of the caller's one transaction
            yield self._db
            return
        # IMMEDIATE takes the write lock up front, so two writers queue instead of failing at COMMIT.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (committed batches are already on disk)."""
        self._db.close()

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    def register_run(self, run: str, config: Any = None, digest: str | None = None) -> str:
        """Record a run and its config (a mapping or a dataclass); returns the config hash.

        ``digest`` overrides the hash (for config types with their own, e.g. ``RunConfig.hash()``). The same
        config again is a no-op; a run first created implicitly by ``write_batch`` takes the config given now.

        Raises:
            InputError: The run exists with a different config hash (its predictions came from another config).
        """
        cfg = _as_mapping(config)
        digest, blob = digest or config_hash(cfg), json.dumps(cfg, default=str)
        with self._transaction() as db:
            row = db.execute("SELECT config_hash FROM runs WHERE run = ?", (run,)).fetchone()
            if row is None:
                db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (run, blob, digest, _now()))
            elif row[0] is None:
                db.execute(
                    "UPDATE runs SET config_json = ?, config_hash = ? WHERE run = ?", (blob, digest, run)
                )
            elif row[0] != digest:
                msg = f"run {run!r} exists with config hash {row[0][:12]}, not {digest[:12]}: use a new run name"
                raise InputError(msg, path=str(self.path))
        return digest

    def register_system(
        self, run: str, name: str, backbone: str | None = None, kind: str | None = None, config: Any = None
    ) -> None:
        """Record a system of a run (its backbone decides matched pairs). Re-registering replaces the entry."""
        cfg = json.dumps(_as_mapping(config), sort_keys=True, default=str)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO systems VALUES (?, ?, ?, ?, ?) ON CONFLICT (run, name) DO UPDATE SET "
                "backbone = excluded.backbone, kind = excluded.kind, config_json = excluded.config_json",
                (run, name, backbone, kind, cfg),
            )

    def relabel_backbone(self, run: str, system: str, backbone: str) -> int:
        """Give a system's stored rows the backbone it has now; returns the rows changed.

        The backbone is the system's metadata, not part of a row's cache key: rows kept from an earlier start
        whose id was spelled otherwise (before ids were lower-cased) would otherwise mix two ids in one system.
        """
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE predictions SET backbone = ? WHERE run = ? AND system = ? AND backbone IS NOT ?",
                (backbone, run, system, backbone),
            )
            return int(cur.rowcount)

    def systems(self, run: str | None = None) -> list[SystemInfo]:
        """Return the registered systems (of one run, or of all runs), ordered by run and name."""
        where, args = self._where(run, None, None, None)
        rows = self._db.execute(
            f"SELECT run, name, backbone, kind, config_json FROM systems{where} ORDER BY 1, 2", args
        )
        return [SystemInfo(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def runs(self) -> list[RunInfo]:
        """Return all runs, oldest first, with their prediction counts."""
        rows = self._db.execute(
            "SELECT r.run, r.config_json, r.config_hash, r.created_at, "
            "(SELECT COUNT(*) FROM predictions p WHERE p.run = r.run) FROM runs r ORDER BY r.created_at, r.run"
        )
        return [RunInfo(r[0], json.loads(r[1]), r[2], r[3], r[4]) for r in rows]

    def write_batch(
        self, run: str, predictions: Sequence[Prediction], cache_keys: Sequence[str]
    ) -> WriteResult:
        """Write one batch of predictions in one transaction (all rows or none).

        A row whose 5-tuple key already exists with the same cache key is skipped (re-running a batch after a
        crash is harmless); with a different cache key it replaces the stale row (some input of that
        prediction changed). The run is registered (without config) if it is new.

        Args:
            run: Run name.
            predictions: The batch.
            cache_keys: One cache key per prediction (a hash of every input that changes the prediction).

        Raises:
            ValueError: Lengths differ, or the batch holds the same key twice.
        """
        if len(predictions) != len(cache_keys):
            raise ValueError(f"{len(predictions)} predictions but {len(cache_keys)} cache keys")
        counts = Counter((p.system, p.task, p.condition, p.example_id) for p in predictions)
        dup = next((k for k, n in counts.items() if n > 1), None)
        if dup is not None:
            raise ValueError(f"batch holds the key (system, task, condition, example_id) = {dup} twice")
        now = _now()
        inserted = replaced = 0
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO runs VALUES (?, '{}', NULL, ?)", (run, now))
            for p, key in zip(predictions, cache_keys, strict=True):
                old = db.execute(
                    "SELECT cache_key, item FROM predictions WHERE run = ? AND system = ? AND task = ? "
                    "AND condition = ? AND example_id = ?",
                    (run, p.system, p.task, p.condition, p.example_id),
                ).fetchone()
                if old is not None and old[0] == key:
                    if old[1] is None and p.item is not None:  # a row written before items were stored
                        db.execute(
                            "UPDATE predictions SET item = ? WHERE run = ? AND system = ? AND task = ? "
                            "AND condition = ? AND example_id = ?",
                            (p.item, run, p.system, p.task, p.condition, p.example_id),
                        )
                    continue
                db.execute(_UPSERT, (run, *_row(p), key, now))
                inserted += old is None
                replaced += old is not None
                # the input was usable this time: an earlier input failure of this row is resolved
                db.execute(
                    "DELETE FROM input_failures WHERE run = ? AND system = ? AND task = ? AND condition = ? "
                    "AND example_id = ?",
                    (run, p.system, p.task, p.condition, p.example_id),
                )
        return WriteResult(inserted, replaced, len(predictions) - inserted - replaced)

    def record_input_failures(self, run: str, failures: Sequence[InputFailure]) -> None:
        """Record examples whose input could not be used, in one transaction.

        A prediction stored for the same (system, task, condition, example) is removed: it came from an input
        that is no longer there (or is an error row of an older casceq), and must not be scored.
        """
        if not failures:
            return
        now = _now()
        with self._transaction() as db:
            for f in failures:
                key = (run, f.system, f.task, f.condition, f.example_id)
                db.execute(
                    "INSERT INTO input_failures VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                    "(run, system, task, condition, example_id) DO UPDATE SET error = excluded.error, "
                    "created_at = excluded.created_at",
                    (*key, f.error, now),
                )
                db.execute(
                    "DELETE FROM predictions WHERE run = ? AND system = ? AND task = ? AND condition = ? "
                    "AND example_id = ?",
                    key,
                )

    def input_failures(self, run: str | None = None) -> list[InputFailure]:
        """Return the recorded input failures (of one run, or of all), ordered by system, task, condition, id."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "input_failures" not in tables:  # a store written before the table existed, opened read-only
            return []
        where, args = self._where(run, None, None, None)
        rows = self._db.execute(
            f"SELECT system, task, condition, example_id, error FROM input_failures{where} ORDER BY 1, 2, 3, 4",
            args,
        )
        return [InputFailure(*r) for r in rows]

    def done(self, run: str, system: str, task: str, condition: str) -> dict[str, str]:
        """Return the finished examples of one (run, system, task, condition): ``{example_id: cache_key}``."""
        rows = self._db.execute(
            "SELECT example_id, cache_key FROM predictions WHERE run = ? AND system = ? AND task = ? "
            "AND condition = ?",
            (run, system, task, condition),
        )
        return dict(rows.fetchall())

    def _where(
        self,
        run: str | None,
        systems: Iterable[str] | None,
        tasks: Iterable[str] | None,
        conditions: Iterable[str] | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if run is not None:
            clauses.append("run = ?")
            args.append(run)
        for column, values in (("system", systems), ("task", tasks), ("condition", conditions)):
            if values is not None:
                vals = [values] if isinstance(values, str) else list(values)
                clauses.append(f"{column} IN ({', '.join('?' * len(vals))})" if vals else "0")
                args.extend(vals)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def predictions(
        self,
        run: str | None = None,
        systems: Iterable[str] | None = None,
        tasks: Iterable[str] | None = None,
        conditions: Iterable[str] | None = None,
    ) -> list[Prediction]:
        """Return the stored predictions matching every given filter (None = all), in order of first insertion."""
        where, args = self._where(run, systems, tasks, conditions)
        rows = self._db.execute(f"SELECT {self._columns} FROM predictions{where} ORDER BY id", args)
        return [_prediction(r) for r in rows]

    def count(
        self,
        run: str | None = None,
        systems: Iterable[str] | None = None,
        tasks: Iterable[str] | None = None,
        conditions: Iterable[str] | None = None,
    ) -> int:
        """Count the stored predictions matching every given filter."""
        where, args = self._where(run, systems, tasks, conditions)
        return int(self._db.execute(f"SELECT COUNT(*) FROM predictions{where}", args).fetchone()[0])

    def integrity_check(self) -> str:
        """Run SQLite's own consistency check: ``"ok"`` for a healthy file."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def _row(p: Prediction) -> tuple[Any, ...]:
    scores = json.dumps(dict(p.label_scores)) if p.label_scores is not None else None
    correct = None if p.correct is None else int(p.correct)
    return (p.system, p.task, p.condition, p.example_id, p.backbone, p.transcript, p.output, p.label, p.gold,
            correct, scores, float(p.seconds), p.item)  # fmt: skip


def _prediction(r: Sequence[Any]) -> Prediction:
    f = dict(zip(_FIELDS, r, strict=True))
    f["label_scores"] = json.loads(f["label_scores"]) if f["label_scores"] is not None else None
    f["correct"] = None if f["correct"] is None else bool(f["correct"])
    return Prediction(**f)
