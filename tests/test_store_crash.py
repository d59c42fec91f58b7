"""Crash safety: a writer SIGKILLed at random moments loses at most its open batch and never duplicates."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time

from casceq.io.store import Store

TOTAL, BATCH = 30000, 50
KEY = ("run", "sys", "sst2", "clean")

# Resumes like the runner: asks done() what is stored, writes the rest in batches of BATCH (1 KB rows, so a
# transaction spans many pages and a kill can land inside one).
WRITER = f"""
import sys
from casceq.io.store import Store
from casceq.types import Prediction
with Store(sys.argv[1]) as s:
    done = s.done(*{KEY!r})
    todo = [i for i in range({TOTAL}) if f"{{i:06d}}" not in done]
    print("ready", flush=True)
    for start in range(0, len(todo), {BATCH}):
        ids = todo[start:start + {BATCH}]
        rows = [Prediction("sys", "sst2", "clean", f"{{i:06d}}", f"{{i}}:" + "x" * 1000, "positive", "positive")
                for i in ids]
        s.write_batch("run", rows, [f"key{{i}}" for i in ids])
        print(start + len(ids), flush=True)
    print("finished", flush=True)
"""


def _start(path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _check(path) -> int:
    # A plain sqlite3 connection: the file must be healthy for any SQLite reader, not just for Store.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT example_id) FROM predictions").fetchone()
        bad = db.execute("SELECT COUNT(*) FROM predictions WHERE output != CAST(example_id AS INTEGER) || ':' || "
                         "printf('%.*c', 1000, 'x')").fetchone()[0]  # fmt: skip
    assert n == distinct, "duplicate rows"
    assert n % BATCH == 0, f"{n} rows: a half-written batch survived"
    assert bad == 0, "a row with a torn output"
    return int(n)


def test_sigkill_at_random_moments_loses_at_most_the_open_batch(tmp_path):
    path = tmp_path / "store.sqlite"
    rng = random.Random(20261122)
    interrupted = 0
    counts = []
    n = 0
    for k in range(8):
        proc = _start(path)
        # Kill once the store holds about (k+1)/9 of the rows, then after a random few milliseconds, so that
        # every kill lands while the writer is running whatever the machine's speed, and at a random point
        # of a transaction.
        target = TOTAL * (k + 1) // 9
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "finished" or n + int(line) >= target:
                break
        time.sleep(rng.uniform(0.0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        n = _check(path)
        counts.append(n)
        # Positive control: the kill really landed in the middle of the writing.
        interrupted += proc.returncode == -signal.SIGKILL and 0 < n < TOTAL
    assert counts == sorted(counts), "rows disappeared between restarts"
    assert interrupted >= 4, f"too few kills landed mid-run ({counts}); the test would not test anything"
    proc = _start(path)
    assert proc.stdout is not None
    assert [line.strip() for line in proc.stdout][-1] == "finished"
    assert proc.wait(timeout=60) == 0
    assert _check(path) == TOTAL
    with Store(path, read_only=True) as s:
        done = s.done(*KEY)
    assert sorted(done) == [f"{i:06d}" for i in range(TOTAL)]
    assert all(done[f"{i:06d}"] == f"key{i}" for i in range(TOTAL))
