"""The report stage: run folders (or interchange files and stores) into one report (Markdown, LaTeX, HTML, figures).

``report(ReportConfig(...))`` builds it with ``casceq.report.build.build_report``; a caller that already holds
the ``compare()`` statistics of the same predictions passes them, so they are not computed again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from casceq.report.build import FORMATS, ReportResult, build_report
from casceq.report.explorer import MAX_CLIPS
from casceq.stats.results import CompareResult


@dataclass(frozen=True)
class ReportConfig:
    """What to report on and how (``casceq report``'s options).

    Attributes:
        inputs: One run folder, or interchange JSONL files / stores / run folders.
        out: Output folder (None: ``RUN_DIR/report`` or ``./casceq-report``).
        mech_dirs: Extra folders of mechanistic results.
        audio_dirs: Extra synthesis folders (texts and audio of the items).
        audio_roots: Folders besides each manifest's own that its audio paths may lead into.
        formats: Any of ``casceq.report.build.FORMATS``.
        run: Read only this run from stores.
        n_bootstrap: Bootstrap resamples (None: the run config's).
        seed: Bootstrap seed (None: the run config's).
        max_clips: Cap on audio clips embedded in the HTML.
    """

    inputs: tuple[str | Path, ...]
    out: str | Path | None = None
    mech_dirs: tuple[str | Path, ...] = ()
    audio_dirs: tuple[str | Path, ...] = ()
    audio_roots: tuple[str | Path, ...] = ()
    formats: tuple[str, ...] = FORMATS
    run: str | None = None
    n_bootstrap: int | None = None
    seed: int | None = None
    max_clips: int = MAX_CLIPS


@dataclass(frozen=True)
class ReportSummary:
    """What the report stage wrote.

    Attributes:
        out: The report folder.
        files: Files written.
        reversals: The ranking reversals under noise, in words.
        warnings: Every section's warnings, in order.
        report: The built report (sections, statistics, sources); not part of the JSON form.
    """

    out: Path
    files: tuple[Path, ...]
    reversals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    report: ReportResult | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        """JSON form (without the in-memory report)."""
        return json.dumps(
            {
                "out": str(self.out),
                "files": [str(f) for f in self.files],
                "reversals": list(self.reversals),
                "warnings": list(self.warnings),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ReportSummary:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(
            Path(d["out"]),
            tuple(Path(f) for f in d["files"]),
            tuple(d["reversals"]),
            tuple(d["warnings"]),
        )


def report(config: ReportConfig, compare_result: CompareResult | None = None) -> ReportSummary:
    """Build the report; ``compare_result``: statistics already computed from the same predictions.

    Raises:
        InputError: Unknown format, unreadable inputs, inconsistent predictions.
        MissingDependency: PNG or SVG asked for without matplotlib.
    """
    built = build_report(
        list(config.inputs),
        out=config.out,
        mech_dirs=config.mech_dirs,
        audio_dirs=config.audio_dirs,
        audio_roots=config.audio_roots,
        formats=config.formats,
        run=config.run,
        n_bootstrap=config.n_bootstrap,
        seed=config.seed,
        max_clips=config.max_clips,
        compare_result=compare_result,
    )
    return ReportSummary(
        built.out,
        built.files,
        tuple(r.sentence() for r in built.reversals),
        tuple(w for s in built.sections for w in s.warnings),
        built,
    )
