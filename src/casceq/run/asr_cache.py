"""Transcripts shared between cascades that use the same ASR on the same audio.

Cascade-S and a mismatched
cascade both run Whisper base: transcribe once). Stored in the run's SQLite file, its own table.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transcripts (
    asr TEXT NOT NULL,
    audio_key TEXT NOT NULL,
    text TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (asr, audio_key)
)
"""


class TranscriptCache:
    """``(asr spec, audio key) -> (transcript, seconds)``; writes are one transaction per batch."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get(self, asr: str, keys: list[str]) -> dict[str, tuple[str, float]]:
        """Cached transcripts among ``keys``."""
        out: dict[str, tuple[str, float]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT audio_key, text, seconds FROM transcripts WHERE asr=? AND audio_key IN ({','.join('?' * len(chunk))})"
            for k, text, sec in self._db.execute(q, [asr, *chunk]):
                out[k] = (text, sec)
        return out

    def put(self, asr: str, rows: list[tuple[str, str, float]]) -> None:
        """Store ``(audio_key, text, seconds)`` rows in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO transcripts (asr, audio_key, text, seconds) VALUES (?, ?, ?, ?)",
                [(asr, k, t, s) for k, t, s in rows],
            )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
