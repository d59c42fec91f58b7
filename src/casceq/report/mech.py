"""Mechanistic sections (Tables 4-7, Figures 4-6) read from the JSON results of ``casceq.mech``.

The reader contract (also in docs/report.md): every ``*.json`` file under the run's ``mech/`` folder and the
folders given with ``--mech`` is read; a file is recognised by its content:

- probes (Table 4 / Figure 4): ``ProbeResults.to_json()`` — ``{"model", "layers", "scores": [{"probe",
  "layer", "score", "n_train_utterances", "n_test_utterances", "dim", "warning", ...}], "n_utterances", ...}``
  (``"kind": "probes"`` optional);
- logit lens (Table 5 / Figure 5): ``{"kind": "lens", "model", "n_utterances", "layers": [{"layer",
  "n_tokens", "precision", ...}]}``;
- implicit cascade (Table 6): ``casceq.mech.implicit.write_results`` — ``{"kind": "implicit", "results":
  [{"model", "task", "layer", "n", "kappa_impl", "kappa_casc", "accuracy_speech", "accuracy_implicit",
  "accuracy_cascade", ...}]}`` (read by ``casceq.report.mech_effects``);
- erasure (Table 7 / Figure 6): ``ErasureResult.to_json()`` — ``{"kind": "erasure", "model", "accuracy":
  [{"task", "condition" ("none" or the erased concept), "n", "accuracy", "same_as_none"}], "probes":
  [{"concept", "layer", "metric", "before", "after", "chance", "n_test"}]}``.

Other JSON files are ignored; a recognised file is read through its typed result's ``from_json``
(``ProbeResults``, ``LensResult``, ``ImplicitResult``, ``ErasureResult``), and one that does not parse is named in
the section, never fatal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.mech.lens import LensResult
from casceq.mech.probes import ProbeResults
from casceq.report.figures import Figure, layer_lines
from casceq.report.sections import Section
from casceq.report.tables import Cell, SourceBook, Table, fmt

PROBE_COLUMNS = (("energy", "energy R²"), ("pitch", "pitch R²"), ("ctc", "CTC 1 − CER"), ("boc", "BoC R²"))


@dataclass(frozen=True)
class MechResults:
    """Recognised result files as ``(path, parsed JSON)``, by kind, plus problems found while reading."""

    probes: tuple[tuple[str, dict[str, Any]], ...] = ()
    lens: tuple[tuple[str, dict[str, Any]], ...] = ()
    implicit: tuple[tuple[str, dict[str, Any]], ...] = ()
    erasure: tuple[tuple[str, dict[str, Any]], ...] = ()
    problems: tuple[str, ...] = field(default=())
    searched: tuple[str, ...] = ()


def kind_of(obj: Any) -> str | None:
    """Which result a parsed JSON file holds (``probes``, ``lens``, ``implicit``, ``erasure``) or None."""
    if not isinstance(obj, dict):
        return None
    kind = obj.get("kind")
    if kind in ("probes", "lens", "implicit", "erasure"):
        return str(kind)
    scores = obj.get("scores")
    if isinstance(scores, list) and scores and isinstance(scores[0], dict) and "probe" in scores[0]:
        return "probes"
    return None


def read_mech(dirs: Sequence[Path]) -> MechResults:
    """Read every recognised result file under ``dirs`` (missing folders are skipped)."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "probes": [],
        "lens": [],
        "implicit": [],
        "erasure": [],
    }
    problems: list[str] = []
    for d in dirs:
        for path in sorted(Path(d).rglob("*.json")) if Path(d).is_dir() else []:
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append(f"{path}: unreadable JSON ({exc})")
                continue
            kind = kind_of(obj)
            if kind:
                found[kind].append((str(path), obj))
    return MechResults(
        probes=tuple(found["probes"]),
        lens=tuple(found["lens"]),
        implicit=tuple(found["implicit"]),
        erasure=tuple(found["erasure"]),
        problems=tuple(problems),
        searched=tuple(str(d) for d in dirs),
    )


def num_or_nan(x: Any) -> float:
    """Return a JSON number as float; anything else (null, strings) as NaN."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def int_or_zero(x: Any) -> int:
    """Return a JSON integer, or 0 when absent."""
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else 0


def not_run(key: str, title: str, what: str, mech: MechResults) -> Section:
    """Return a section saying its results were not found, and where the report looked."""
    where = ", ".join(mech.searched) or "no mech folder"
    return Section(key, title, (f"Not run: no {what} results found (searched {where}).", *mech.problems))


def probe_section(mech: MechResults, draw: bool, book: SourceBook) -> Section:
    """Table 4 / Figure 4: probe scores by layer, one table per model."""
    title = "Table 4 / Figure 4: probes by layer"
    if not mech.probes:
        return not_run("probes", title, "probe", mech)
    tables: list[Table] = []
    panels: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    problems: list[str] = []
    for path, obj in mech.probes:
        try:
            res = ProbeResults.from_json(json.dumps({k: v for k, v in obj.items() if k != "kind"}))
            model = str(res.model)
            scores = [(str(s.probe), int(s.layer), num_or_nan(s.score)) for s in res.scores]
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{path}: malformed probe results ({exc!r})")
            continue
        layers = sorted({layer for _, layer, _ in scores})
        cols = [(p, label) for p, label in PROBE_COLUMNS if any(s[0] == p for s in scores)]
        value = {(p, layer): v for p, layer, v in scores}
        ref = book.add_file(f"probe results of {model}", path, int_or_zero(res.n_utterances))
        rows = tuple(
            (Cell(str(layer)), *(Cell(fmt(value.get((p, layer))), ref) for p, _ in cols)) for layer in layers
        )
        first = res.scores[0]
        note = (
            f"{res.n_utterances} utterances (train {first.n_train_utterances}, test "
            f"{first.n_test_utterances}, split by {res.split_by}), "
            f"D = {first.dim}; source {path}."
        )
        warns = sorted({f"{s.probe} layer {s.layer}: {s.warning}" for s in res.scores if s.warning})
        tables.append(
            Table(
                f"table4-{len(tables) + 1}",
                f"Probe scores by layer — {model}",
                ("layer", *(label for _, label in cols)),
                rows,
                (note, *warns),
            )
        )
        panels[model] = {label: (layers, [value.get((p, x), math.nan) for x in layers]) for p, label in cols}
    figs: tuple[Figure, ...] = ()
    if draw and panels:
        figs = (
            layer_lines(
                "figure4",
                "Figure 4: probes by layer",
                "Held-out probe score per layer (split by "
                "utterance): energy and pitch R², CTC text decodability 1 − CER, bag-of-characters R².",
                panels,
                "held-out score",
            ),
        )
    return Section("probes", title, tuple(problems), tuple(tables), figs)


def lens_section(mech: MechResults, draw: bool, book: SourceBook) -> Section:
    """Table 5 / Figure 5: logit-lens bag-of-tokens precision by layer."""
    title = "Table 5 / Figure 5: logit lens"
    if not mech.lens:
        return not_run("lens", title, "logit-lens", mech)
    tables: list[Table] = []
    lines: dict[str, tuple[list[int], list[float]]] = {}
    problems: list[str] = []
    for path, obj in mech.lens:
        try:
            res = LensResult.from_json(obj)
            model = str(res.model)
            layers = [(int(r.layer), int(r.n_tokens), num_or_nan(r.precision)) for r in res.layers]
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{path}: malformed lens results ({exc!r})")
            continue
        ref = book.add_file(f"logit lens of {model}", path, int_or_zero(res.n_utterances))
        rows = tuple((Cell(str(layer)), Cell(str(n), ref), Cell(fmt(p), ref)) for layer, n, p in layers)
        note = f"{res.n_utterances} utterances, source {res.source}; file {path}."
        tables.append(
            Table(
                f"table5-{len(tables) + 1}",
                f"Logit-lens bag-of-tokens precision — {model}",
                ("layer", "tokens scored", "precision"),
                rows,
                (note,),
            )
        )
        lines[model] = ([x for x, _, _ in layers], [p for _, _, p in layers])
    figs: tuple[Figure, ...] = ()
    if draw and lines:
        figs = (
            layer_lines(
                "figure5",
                "Figure 5: logit lens",
                "Fraction of lens tokens found in the reference transcript, per layer.",
                {"bag-of-tokens precision": lines},
                "precision",
            ),
        )
    return Section("lens", title, tuple(problems), tuple(tables), figs)
