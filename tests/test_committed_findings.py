"""The committed findings pages are what the released rules say of the committed runs.

docs/results/findings.md is copied from the powered run (packed in docs/results/powered/state.tar.gz),
docs/results/findings_listener.md from the listener's run (docs/results/listener/state.tar.gz). Unpacking a state
and re-judging it with this checkout's rules (no model is loaded) must give the same page below its header: a
change to a rule that moves a verdict or a number fails here until the page is re-judged and committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from casceq.cli import main

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
RUNS = {  # packed state -> (page, subjects the page must judge)
    "powered": ("findings.md", ("Speech-LLM", "Speech-LLM-C", "Speech-LLM-A", "Cascade-W")),
    "listener": ("findings_listener.md", ("Speech-LLM", "Speech-LLM-L", "Cascade-W")),
}
FIRST = "## Subjects x claims"


def _body(text: str) -> str:
    """The page from its subjects x claims table on (the header names commits and dates, which differ)."""
    assert FIRST in text
    return text[text.index(FIRST) :]


@pytest.mark.parametrize("run", sorted(RUNS))
def test_the_committed_page_is_the_committed_runs_rejudged_page(tmp_path: Path, run: str) -> None:
    state = RESULTS / run / "state.tar.gz"
    page, subjects = RUNS[run]
    if not state.is_file():
        pytest.skip(f"{state.relative_to(ROOT)} is not in this checkout")
    out = tmp_path / run
    assert main(["reproduce", "--out", str(out), "--unpack", str(state)]) == 0
    assert main(["reproduce", "--offline", "--out", str(out), "--rejudge"]) == 0
    body = _body((out / "findings.md").read_text(encoding="utf-8"))
    # the re-judged page is the whole page of every subject, not an empty shell that any page would match
    for subject in subjects:
        assert f"| **{subject}** |" in body and f"\n## {subject}: " in body
    assert body == _body((RESULTS / page).read_text(encoding="utf-8"))
