"""The committed findings page is what the released rules say of the committed run.

docs/results/findings.md is copied from the powered run (packed in docs/results/powered/state.tar.gz). Unpacking
that state and re-judging it with this checkout's rules (no model is loaded) must give the same page below its
header: a change to a rule that moves a verdict or a number fails here until the page is re-judged and committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from casceq.cli import main

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "docs" / "results" / "powered" / "state.tar.gz"
PAGE = ROOT / "docs" / "results" / "findings.md"
FIRST = "## Subjects x claims"


def _body(text: str) -> str:
    """The page from its subjects x claims table on (the header names commits and dates, which differ)."""
    assert FIRST in text
    return text[text.index(FIRST) :]


def test_the_committed_page_is_the_committed_runs_rejudged_page(tmp_path: Path) -> None:
    if not STATE.is_file():
        pytest.skip(f"{STATE.relative_to(ROOT)} is not in this checkout")
    out = tmp_path / "powered"
    assert main(["reproduce", "--out", str(out), "--unpack", str(STATE)]) == 0
    assert main(["reproduce", "--offline", "--out", str(out), "--rejudge"]) == 0
    body = _body((out / "findings.md").read_text(encoding="utf-8"))
    # the re-judged page is the whole page of four subjects, not an empty shell that any page would match
    for subject in ("Speech-LLM", "Speech-LLM-C", "Speech-LLM-A", "Cascade-W"):
        assert f"| **{subject}** |" in body and f"\n## {subject}: " in body
    assert body == _body(PAGE.read_text(encoding="utf-8"))
