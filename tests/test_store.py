"""The prediction store: exact round trips, cache-key semantics, atomic batches, schema guard."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from casceq.errors import InputError
from casceq.io.store import SCHEMA_VERSION, Store, WriteResult, config_hash
from casceq.types import Prediction


def pred(i: int, system: str = "cascade", task: str = "sst2", condition: str = "clean", **kw) -> Prediction:
    base = dict(
        system=system,
        task=task,
        condition=condition,
        example_id=f"ex{i}",
        output=f"raw answer {i}",
        label="positive" if i % 2 else "negative",
        gold="positive",
        transcript=f"transcript {i}",
        label_scores={"positive": -0.25 * i, "negative": -1.5},
        seconds=0.125 * i,
        backbone="smollm2",
        correct=bool(i % 2),
    )
    base.update(kw)
    return Prediction(**base)


def test_write_then_read_gives_back_the_same_predictions(tmp_path):
    rows = [pred(i) for i in range(7)] + [
        pred(0, transcript=None, label_scores=None, correct=None, backbone=None)
    ]
    rows[-1] = pred(9, system="speech", transcript=None, label_scores=None, correct=None, backbone=None)
    with Store(tmp_path / "s.sqlite") as s:
        assert s.write_batch("r1", rows, [f"k{i}" for i in range(len(rows))]) == WriteResult(8, 0, 0)
    with Store(tmp_path / "s.sqlite", read_only=True) as s:
        back = s.predictions()
        assert back == rows
        # label_scores is excluded from Prediction equality: compare it separately.
        assert [b.label_scores for b in back] == [r.label_scores for r in rows]
        assert s.count() == 8
        assert s.count(systems=["speech"]) == 1
        assert s.predictions(systems="speech") == [rows[-1]]
        assert s.count(run="other") == 0


def test_same_cache_key_is_skipped_and_new_cache_key_replaces_in_place(tmp_path):
    with Store(tmp_path) as s:
        first = [pred(i) for i in range(4)]
        s.write_batch("r", first, ["a", "b", "c", "d"])
        assert s.write_batch("r", first, ["a", "b", "c", "d"]) == WriteResult(0, 0, 4)
        changed = pred(1, output="a new answer", label="negative")
        result = s.write_batch("r", [changed, pred(4)], ["b2", "e"])
        assert result == WriteResult(inserted=1, replaced=1, skipped=0)
        assert s.count() == 5
        assert s.done("r", "cascade", "sst2", "clean") == {
            "ex0": "a",
            "ex1": "b2",
            "ex2": "c",
            "ex3": "d",
            "ex4": "e",
        }
        # The replaced row keeps its position (order of first insertion).
        assert [p.output for p in s.predictions()] == ["raw answer 0", "a new answer", "raw answer 2", "raw answer 3",
                                                       "raw answer 4"]  # fmt: skip
        assert s.done("r", "cascade", "sst2", "babble@10") == {}


def test_runs_are_separate_and_filters_combine(tmp_path):
    with Store(tmp_path) as s:
        s.write_batch("r1", [pred(i) for i in range(3)], ["k"] * 3)
        s.write_batch("r2", [pred(i, condition="babble@5") for i in range(2)], ["k"] * 2)
        s.write_batch("r2", [pred(i, task="ag_news", system="speech") for i in range(4)], ["k"] * 4)
        assert s.count() == 9
        assert s.count(run="r2") == 6
        assert s.count(run="r2", conditions=["clean"]) == 4
        assert s.count(tasks=["sst2"], conditions=["clean", "babble@5"]) == 5
        assert s.count(systems=[]) == 0
        assert [(r.run, r.n_predictions) for r in s.runs()] == [("r1", 3), ("r2", 6)]


def test_a_failing_batch_writes_nothing(tmp_path):
    bad = pred(2, output=None)  # violates NOT NULL in the middle of the batch
    with Store(tmp_path) as s:
        with pytest.raises(sqlite3.IntegrityError):
            s.write_batch("r", [pred(0), pred(1), bad, pred(3)], ["k"] * 4)
        assert s.count() == 0
        # Positive control: the same batch without the bad row is written whole.
        assert s.write_batch("r", [pred(0), pred(1), pred(3)], ["k"] * 3).inserted == 3
        with pytest.raises(ValueError, match="twice"):
            s.write_batch("r", [pred(5), pred(5)], ["x", "y"])
        with pytest.raises(ValueError, match="cache keys"):
            s.write_batch("r", [pred(6)], [])
        assert s.count() == 3


def test_register_run_hash_and_conflict(tmp_path):
    cfg = {"systems": ["a", "b"], "seed": 3}
    expected = hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    with Store(tmp_path) as s:
        s.write_batch("r", [pred(0)], ["k"])  # creates the run without config
        assert s.runs()[0].config_hash is None
        assert s.register_run("r", cfg) == expected == config_hash(cfg)
        assert s.register_run("r", dict(reversed(cfg.items()))) == expected  # key order does not matter
        with pytest.raises(InputError, match="exists with config hash"):
            s.register_run("r", {"systems": ["a"], "seed": 3})
        assert s.register_run("r2", cfg, "myhash") == "myhash"
        info = {r.run: r for r in s.runs()}
        assert info["r"].config == cfg and info["r"].n_predictions == 1
        s.register_system("r", "casc", "smollm2", "cascade", {"asr": "tiny.en"})
        s.register_system("r", "casc", "gemma", "cascade", None)  # re-registering replaces
        (sysinfo,) = s.systems("r")
        assert (sysinfo.name, sysinfo.backbone, sysinfo.kind, dict(sysinfo.config)) == (
            "casc",
            "gemma",
            "cascade",
            {},
        )
        assert s.systems("r2") == []


def test_pragmas_give_wal_and_full_sync(tmp_path):
    with Store(tmp_path) as s:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s.schema_version == SCHEMA_VERSION
        assert s.integrity_check() == "ok"
    assert (tmp_path / "store.sqlite").is_file()


def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(InputError, match=rf"s\.sqlite: store schema version {SCHEMA_VERSION + 1} is newer"):
        Store(path)


def test_non_stores_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="not a casceq store"):
        Store(other)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(InputError, match=r"garbage\.sqlite: not a readable SQLite store"):
        Store(garbage)
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(InputError, match="no such store"):
        Store(missing, read_only=True)
    assert not missing.exists()


OLD_PREDICTIONS_TABLE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (run TEXT PRIMARY KEY, config_json TEXT NOT NULL, config_hash TEXT, created_at TEXT NOT NULL);
CREATE TABLE systems (run TEXT NOT NULL, name TEXT NOT NULL, backbone TEXT, kind TEXT, config_json TEXT NOT NULL,
    PRIMARY KEY (run, name));
CREATE TABLE predictions (id INTEGER PRIMARY KEY, run TEXT NOT NULL, system TEXT NOT NULL, task TEXT NOT NULL,
    condition TEXT NOT NULL, example_id TEXT NOT NULL, backbone TEXT, transcript TEXT, output TEXT NOT NULL,
    label TEXT NOT NULL, gold TEXT NOT NULL, correct INTEGER, label_scores TEXT, seconds REAL NOT NULL,
    cache_key TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (run, system, task, condition, example_id));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES ('old', '{}', NULL, '2026-01-01');
INSERT INTO predictions (run, system, task, condition, example_id, output, label, gold, seconds, cache_key,
    created_at) VALUES ('old', 's', 'sst2', 'clean', 'e1@v1', 'positive', 'positive', 'positive', 0, 'k', 'now');
"""


def test_item_round_trips(tmp_path):
    rows = [pred(1, example_id="e1@v1", item="e1"), pred(2, example_id="e1@v2", item="e1"), pred(3)]
    with Store(tmp_path / "s.sqlite") as s:
        s.write_batch("r", rows, ["a", "b", "c"])
    with Store(tmp_path / "s.sqlite", read_only=True) as s:
        assert [p.item for p in s.predictions()] == ["e1", "e1", None]


def test_a_store_written_before_items_is_read_and_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_PREDICTIONS_TABLE)
    db.close()
    with Store(path, read_only=True) as s:  # read-only: no column to add, a missing item reads as None
        (p,) = s.predictions()
        assert (p.example_id, p.item) == ("e1@v1", None)
    with Store(path) as s:  # writable: the column is added, old rows keep NULL, new rows store theirs
        assert s.write_batch("old", [pred(5, example_id="e2@v1", item="e2")], ["k2"]) == WriteResult(1, 0, 0)
        assert [p.item for p in s.predictions()] == [None, "e2"]
        # Re-writing an old row with the same cache key fills in its item (a resumed run from before items).
        same = s.predictions()[0]
        assert s.write_batch("old", [Prediction(**{**same.__dict__, "item": "e1"})], ["k"]).skipped == 1
        assert [p.item for p in s.predictions()] == ["e1", "e2"]
        assert s.schema_version == SCHEMA_VERSION
