"""Strict reading of JSON-lines files: one object per line, each error named by file and line.

Python's ``json`` silently keeps the last value of a key named twice; here that is an error (which value was
meant?). A UTF-8 byte-order mark is accepted; text that is not UTF-8 is refused by name, not by traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from casceq.errors import InputError


class DuplicateKey(ValueError):
    """A JSON object names one key twice."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads`` that refuses a key named twice in one object."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(f"duplicate key {key!r} in one record (which value is meant?)")
        out[key] = value
    return out


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file.

    Raises:
        InputError: Unreadable or non-UTF-8 file, invalid JSON, a line that is not an object, or a duplicate key;
            naming the file (and line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from exc
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    # split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and others, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg})", path=str(path), line=number) from exc
        except DuplicateKey as exc:
            raise InputError(str(exc), path=str(path), line=number) from exc
        if not isinstance(obj, dict):
            raise InputError("expected one JSON object per line", path=str(path), line=number)
        yield number, obj
