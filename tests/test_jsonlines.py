"""Strict JSON-lines reading: line numbers, a raw U+2028 inside a string, duplicate keys, BOM, non-UTF-8."""

from __future__ import annotations

from pathlib import Path

import pytest

from casceq.errors import InputError
from casceq.jsonlines import read_jsonl


def test_lines_are_split_at_newlines_only(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    # A raw LINE SEPARATOR and NEXT LINE inside a JSON string are legal JSON (TriviaQA has them).
    path.write_text('\ufeff{"q": "a\u2028b\x85c"}\n\n{"q": "d"}\r\n', encoding="utf-8")
    assert list(read_jsonl(path)) == [(1, {"q": "a\u2028b\x85c"}), (3, {"q": "d"})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": 1, "a": 2}\n', r"a\.jsonl:2: duplicate key 'a'"),
        (b'{"a": 1}\n[1, 2]\n', r"a\.jsonl:2: expected one JSON object per line"),
        (b'{"a": \n', r"a\.jsonl:1: not valid JSON"),
        (b'{"a": "\xff"}\n', r"a\.jsonl: not UTF-8 text"),
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        list(read_jsonl(path))
