"""One section protocol: every report section is ``section(ctx) -> Section``, and the report is unchanged.

``tests/data/report_fixture.md`` is the report.md of the fixture run (``tests/test_report_fixture.make_run``)
written by the report code before the sections took one signature (run folder path replaced by ``{RUN}``):
the refactor must not move a number, a source reference or a word.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_origin

from casceq.report.build import SECTIONS, build_report
from casceq.report.context import ReportContext
from tests.test_report_fixture import make_run

GOLDEN = Path(__file__).parent / "data" / "report_fixture.md"


def test_report_md_equals_the_report_written_before_the_protocol(tmp_path: Path) -> None:
    fx = make_run(tmp_path / "run")
    res = build_report([fx.root], formats=["md", "tex", "html"])
    text = (fx.root / "report" / "report.md").read_text().replace(str(fx.root), "{RUN}")
    assert text == GOLDEN.read_text()
    assert res.markdown.replace(str(fx.root), "{RUN}") == text


def test_every_section_takes_the_context_only() -> None:
    for section in SECTIONS:
        params = list(inspect.signature(section, eval_str=True).parameters.values())
        assert [get_origin(p.annotation) for p in params] == [ReportContext], section.__name__


def test_sections_are_listed_once_in_the_papers_order(tmp_path: Path) -> None:
    res = build_report([make_run(tmp_path / "run").root], formats=["md"])
    keys = [s.key for s in res.sections]
    behaviour = ["overview", "accuracy", "agreement", "overlap", "shared", "confound", "noise", "cost"]
    assert keys == [*behaviour, "probes", "lens", "implicit", "erasure"]
    assert len(set(SECTIONS)) == len(SECTIONS) == len(keys)
