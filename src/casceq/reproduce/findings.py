"""The findings page: every claim of the paper with our numbers and a verdict, as ``findings.md`` and ``.json``.

``judge(out, plan, timings)`` reads the reproduction folder (``run/compare.json``, ``run/predictions.jsonl``,
``mech/lens/``, ``mech/implicit/``, ``mech/erasure/``; the mechanistic results through their stages' typed
readers) and applies the rules of ``claims_behaviour`` and ``claims_mech``; ``write_findings`` writes the page
with a header recording how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from casceq.io.interchange import read_predictions
from casceq.mech.erasure_concepts import ERASURE_FILE
from casceq.mech.implicit import IMPLICIT_FILE
from casceq.mech.lens import LENS_ALL_FILE, LENS_FILE
from casceq.report.analysis import noise_points, reversals, snr_of
from casceq.reproduce import claims_behaviour as cb
from casceq.reproduce import claims_mech as cm
from casceq.reproduce.mech import subject_mech_dir
from casceq.reproduce.plan import PRIMARY, SPEECH_TASKS, TEXT_TASKS, Plan, Subject
from casceq.reproduce.rules import (
    CONTRADICTED,
    INCONCLUSIVE,
    REFERENCE,
    REPRODUCED,
    Claim,
    CompareView,
    item_of,
)
from casceq.reproduce.state import segment_lines
from casceq.stages.erase import read_erasure
from casceq.stages.implicit import read_implicit
from casceq.stages.lens import LENS_CONTROL_FILE, LensControl, read_lens
from casceq.stats.compare import compare
from casceq.stats.results import CompareResult

FINDINGS_MD = "findings.md"
FINDINGS_JSON = "findings.json"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


T = TypeVar("T")


def _read_typed(path: Path, reader: Callable[[Path], T]) -> tuple[T | None, str | None]:
    """A stage's result read by its typed reader, and why it could not be read.

    ``(result, None)``; ``(None, None)`` when the file is absent or not JSON (the stage did not finish, as
    before); ``(None, why)`` naming the file when it is JSON the reader cannot take (a claim then says so
    instead of failing the whole findings page).
    """
    if not path.is_file():
        return None, None
    try:
        return reader(path), None
    except (OSError, json.JSONDecodeError):
        return None, None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return None, f"unreadable result {path}: {type(exc).__name__}: {exc}"


def _read_control(path: Path) -> LensControl:
    """Read a ``lens_control.json`` file."""
    return LensControl.from_json(json.loads(path.read_text(encoding="utf-8")))


def _missing(stage: str, timings: Mapping[str, Mapping[str, Any]], plan: Plan) -> str:
    """Why a stage's result is absent (skipped, failed, not run)."""
    if not plan.mech and stage != "behavioural":
        return "mechanistic suite skipped (--skip-mech)"
    rec = timings.get(stage)
    if rec is None:
        return f"stage {stage} did not run"
    return f"stage {stage} {rec.get('status', '?')}" + (f": {rec['detail']}" if rec.get("detail") else "")


def judge(
    out: Path,
    plan: Plan,
    timings: Mapping[str, Mapping[str, Any]],
    bh_family: str = "paper",
    compare_result: CompareResult | None = None,
) -> list[Claim]:
    """Every claim's verdict for the plan's first subject, the run's ``Speech-LLM`` (``judge_subjects``)."""
    return judge_subjects(out, plan, timings, bh_family, compare_result)[plan.all_subjects[0].name]


def judge_subjects(
    out: Path,
    plan: Plan,
    timings: Mapping[str, Mapping[str, Any]],
    bh_family: str = "paper",
    compare_result: CompareResult | None = None,
) -> dict[str, list[Claim]]:
    """Every claim's verdict for every subject of the plan, from the folder ``out`` (stored results only).

    A one-subject plan is judged on the run's ``compare.json`` as it stands. With several subjects each is
    judged on its own view of the predictions (``subject_predictions``: its rows named ``Speech-LLM``, the other
    subjects' rows left out), whose statistics are recomputed with the plan's resamples and seed, so every rule
    reads exactly the one-speech-LLM comparison it was written for. A stand-in subject (a cascade) has no
    speech-LLM states: its mechanistic claims are ``NOT_APPLICABLE``.

    ``bh_family`` names the Benjamini-Hochberg family of the McNemar q-values (``casceq.reproduce.rules``).
    ``compare_result``: the statistics of ``out/run``'s predictions when a stage of this call computed them
    (one-subject plans only; the noise claim reads their accuracies); None: computed here.
    """
    data = _read(out / "run" / "compare.json")
    pred_file = out / "run" / "predictions.jsonl"
    preds = read_predictions([pred_file]) if data is not None and pred_file.is_file() else []
    subjects = plan.all_subjects
    result: dict[str, list[Claim]] = {}
    for subject in subjects:
        if data is None:
            claims = _no_behaviour(_missing("behavioural", timings, plan))
        elif len(subjects) == 1:
            claims = _behaviour_claims(
                item_statistics(data, preds, plan), preds, plan, bh_family, compare_result
            )
        else:
            view = subject_predictions(preds, plan, subject)
            fresh = _compare(view, plan)
            claims = _behaviour_claims(json.loads(fresh.to_json()), view, plan, bh_family, fresh)
        if subject.stand_in is not None:
            why = f"not applicable: {subject.name} is a cascade, it has no speech-LLM states to analyse"
            claims += [Claim(k, t, "", "", NOT_APPLICABLE, why) for k, t in MECH_TITLES]
        else:
            claims += _mech_claims(subject_mech_dir(plan, out, subject), plan, timings, plan.suffix(subject))
        result[subject.name] = claims
    return result


NOT_APPLICABLE = "not applicable"
"""A subject-level outcome: the claim cannot be asked of this subject (a cascade's speech-LLM states)."""

MECH_TITLES = (("f", "Logit lens"), ("g", "Erasure"), ("h", "Implicit cascade"))


def _no_behaviour(why: str) -> list[Claim]:
    titles = (
        ("a", "Ceiling"),
        ("b", "Backbone confound"),
        ("c", "Error overlap"),
        ("d", "Text-insufficient tasks"),
        ("e", "Noise"),
    )
    return [Claim(key, title, "", "", INCONCLUSIVE, why) for key, title in titles]


def _behaviour_claims(
    data: Mapping[str, Any],
    preds: Sequence[Any],
    plan: Plan,
    bh_family: str,
    compare_result: CompareResult | None,
) -> list[Claim]:
    """Claims (a-e) from one-speech-LLM statistics ``data`` and the rows they were computed from."""
    text = [t for t in TEXT_TASKS if t in plan.n]
    speech = [t for t in SPEECH_TASKS if t in plan.n]
    cmp = CompareView(data)
    labels, correct, items = cb.label_table(preds), cb.correctness_table(preds), cb.item_table(preds)
    return [
        cb.claim_ceiling(cmp, text, bh_family, correct or None, items),
        cb.claim_confound(cmp, text),
        cb.claim_overlap(cmp, text, labels or None, items),
        cb.claim_text_insufficient(cmp, text, speech),
        _noise(preds, plan, cmp, text, compare_result),
    ]


def subject_predictions(preds: Sequence[Any], plan: Plan, subject: Subject) -> list[Any]:
    """The run's rows as a one-speech-LLM run of ``subject``.

    The subject's rows (a stand-in's: a copy of the system it stands in for) are named ``Speech-LLM``; every
    other speech-LLM subject's rows are left out.
    """
    source = subject.stand_in or subject.name
    speech = {s.name for s in plan.speech_subjects}
    out = []
    for p in preds:
        if p.system == source:
            out.append(dataclasses.replace(p, system=PRIMARY))
            if subject.stand_in is None:
                continue
        if p.system not in speech:
            out.append(p)
    return out


def _compare(view: Sequence[Any], plan: Plan) -> CompareResult:
    """Statistics of prediction rows with the item as the unit, as the run computes them.

    A row without an item gets the id before "@"; the plan's resamples and seed are used.
    """
    named = [dataclasses.replace(p, item=item_of(p.example_id)) if p.item is None else p for p in view]
    present = {p.system for p in named}
    kinds = {s: k for s, k in SYSTEM_KINDS.items() if s in present}
    return compare(named, n_bootstrap=plan.bootstrap, seed=plan.seed, intersect=True, kinds=kinds)


def _mech_claims(
    mech: Path, plan: Plan, timings: Mapping[str, Mapping[str, Any]], suffix: str = ""
) -> list[Claim]:
    """Claims (f-h) from the lens, erasure and implicit results under ``mech`` (the stages' typed readers).

    ``suffix``: the subject's stage-name suffix (``-speech-llm-c``), for saying why a result is missing.
    """
    lens, bad_lens = _read_typed(mech / "lens" / LENS_FILE, read_lens)
    control, bad_control = _read_typed(mech / "lens" / LENS_CONTROL_FILE, _read_control)
    erasure, bad_erasure = _read_typed(mech / "erasure" / ERASURE_FILE, read_erasure)
    implicit, bad_implicit = _read_typed(mech / "implicit" / IMPLICIT_FILE, read_implicit)
    return [
        cm.claim_lens(lens, control, bad_lens or bad_control or _missing(f"lens{suffix}", timings, plan)),
        cm.claim_erasure(erasure, bad_erasure or _missing(f"erasure{suffix}", timings, plan)),
        cm.claim_implicit(
            implicit.results if implicit is not None else None,
            bad_implicit or _missing(f"implicit{suffix}", timings, plan),
        ),
    ]


SYSTEM_KINDS = {
    "Cascade-S": "cascade",
    "Cascade-W": "cascade",
    "Cascade-M": "cascade",
    "Speech-LLM": "speech_llm",
    "Text": "text",
}
"""Kinds of the plan's systems (``plan.experiment_toml``), for a recomputed ``compare``."""


def item_statistics(data: Mapping[str, Any], preds: Sequence[Any], plan: Plan) -> Mapping[str, Any]:
    """``compare.json`` with the item as the unit: recomputed from the predictions when it was not.

    A run made before clips carried their item wrote voiced clips (``example@voice``) without ``item``, so its
    ``compare.json`` (and any recomputed without items) treats every clip as independent: every κ interval and
    chance gate the rules read would be clip-level. Then the statistics are computed again from
    ``predictions.jsonl`` with each such clip's item set to its example (the id before "@"), with the plan's
    resamples and seed, as the run computes them. Statistics only: no model output is recomputed.
    """
    unnamed = [p for p in preds if p.item is None and "@" in p.example_id]
    old = any("n_items" not in r for r in (*data.get("accuracy", ()), *data.get("pairs", ())))
    if not preds or not (unnamed or old):
        return data
    fresh = json.loads(_compare(preds, plan).to_json())
    return {**data, **{k: fresh[k] for k in ("accuracy", "pairs", "backbone_confound", "label_distribution")}}


def _noise(
    preds: Sequence[Any],
    plan: Plan,
    cmp: CompareView,
    text: Sequence[str],
    result: CompareResult | None = None,
) -> Claim:
    """Claim (e) from the rows; ``result``: their statistics (only accuracies are read: any resamples, kinds)."""
    noisy = [c for c in plan.conditions if c != "clean"]
    if not noisy:
        return cb.claim_noise(cmp, text, {})
    low = min(noisy, key=lambda c: snr_of(c) or 0.0)
    table = cb.correctness_table(preds)
    items = cb.item_table(preds)
    drops = {
        t: cb.degradation(table, t, cb.SPEECH, cb.STRONG, low, plan.bootstrap, plan.seed, items) for t in text
    }
    audio = {cb.SPEECH, cb.STRONG, cb.WEAK, cb.MISMATCHED}
    result = result or compare(preds, n_bootstrap=0, intersect=True)
    found = [r for r in reversals(noise_points(result)) if {r.a, r.b} <= audio and cb.SPEECH in (r.a, r.b)]
    return cb.claim_noise(cmp, text, drops, [r.sentence() for r in found])


def header_lines(plan: Plan, meta: Mapping[str, Any], timings: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The page header: command, commit, machine, date, n per task and wall time per stage."""
    sizes = ", ".join(
        f"{t} {plan.n[t]}" + (f" items × {len(plan.voices)} voices" if t in TEXT_TASKS else " clips")
        for t in plan.tasks
    )
    lines = [
        "# casceq reproduce: findings",
        "",
        f"- command: `{meta.get('command', '?')}`",
        f"- casceq commit: `{meta.get('commit') or 'unknown'}`",
        f"- machine: {meta.get('platform', '?')}; {meta.get('machine', '?')}; {meta.get('cpus', '?')} CPUs; "
        f"torch threads {meta.get('threads', '?')}",
        f"- date: {meta.get('date', '?')}",
        *[
            f"- findings re-judged by `{r.get('command', '?')}` (no model run) at "
            f"`{str(r.get('commit') or 'unknown')[:10]}` on {r.get('date', '?')}"
            for r in meta.get("rejudged", ())
        ],
        *segment_lines(list(meta.get("segments", ()))),
        f"- n per task: {sizes}; conditions: {', '.join(plan.conditions)}; voices: {', '.join(plan.voices)}",
        "- mechanistic suite: "
        + (f"{plan.mech_n} utterances per capture / items per task" if plan.mech else "skipped"),
        f"- models: {', '.join(f'{k} = {v}' for k, v in vars(plan.models).items() if v)}",
        *(
            [
                f"- source splits: {', '.join(f'{t} {s}' for t, s in plan.splits.items())} (evaluated and calibrated)"
            ]
            if plan.splits
            else []
        ),
        *(
            [
                "- subjects: "
                + ", ".join(
                    f"{s.name} = {s.spec or 'stand-in for ' + str(s.stand_in)}" for s in plan.subjects
                )
            ]
            if plan.subjects
            else []
        ),
        "",
        "| stage | status | wall s |",
        "|---|---|---:|",
    ]
    total = 0.0
    for name, rec in timings.items():
        secs = float(rec.get("seconds", 0.0))
        total += secs
        lines.append(f"| {name} | {rec.get('status', '?')} | {secs:.0f} |")
    lines += [f"| total | | {total:.0f} |", ""]
    return lines


def markdown(claims: Sequence[Claim], header: Sequence[str]) -> str:
    """The findings page."""
    lines = list(header)
    lines += ["## Verdicts", "", "| claim | verdict | powered | why |", "|---|---|---|---|"]
    for c in claims:
        powered = {True: "yes", False: "no", None: "–"}[c.powered]
        lines.append(f"| ({c.key}) {c.title} | **{c.verdict}** | {powered} | {c.reason} |")
    lines += [
        "",
        "*Powered*: the minimum detectable effect (80% power) of every tested task is at most the claim's "
        "reference effect or margin: "
        + ", ".join(f"({k}) {v}" for k, v in REFERENCE.items())
        + " (our reading of the paper's wording, not numbers from its tables; docs/reproduce.md). An "
        "unpowered inconclusive verdict says this n could not have decided.",
        "",
    ]
    for c in claims:
        lines += [f"## ({c.key}) {c.title}: {c.verdict}", ""]
        if c.claim:
            lines += [f"*Paper's claim.* {c.claim}", ""]
        if c.rule:
            lines += [f"*Rule.* {c.rule}", ""]
        if c.tasks:
            lines += ["| task | verdict | why | numbers |", "|---|---|---|---|"]
            lines += [f"| {t.task} | {t.verdict} | {t.reason} | {t.numbers.lstrip('; ')} |" for t in c.tasks]
            lines.append("")
        else:
            lines += [f"{c.reason}", ""]
    lines += [
        "Verdicts follow explicit rules (casceq.reproduce.rules, claims_behaviour, claims_mech; docs/reproduce.md). "
        "The full report with every table and figure is in `report/`.",
        "",
    ]
    return "\n".join(lines)


AGREES, NOT_DETECTED, DISAGREES, UNDECIDED = "agrees", "not detected", "disagrees", "undecided"
"""How a verdict compares with a known answer (``agreement``)."""


def agreement(verdict: str, expected: str) -> str:
    """Whether a verdict matches the known answer of a subject on a claim.

    Expected ``reproduced``: agrees when reproduced, disagrees when contradicted, undecided when inconclusive
    (the n could not decide). Expected ``not reproduced``: disagrees when the claim is judged reproduced (the
    detector sees what is not there, the worst error), agrees only when it is contradicted (the data rule the
    effect out), and is ``not detected`` when inconclusive: no false detection, but no confirmation either, so a
    detector that never decides cannot collect agreements.
    """
    if expected == REPRODUCED:
        return {REPRODUCED: AGREES, CONTRADICTED: DISAGREES}.get(verdict, UNDECIDED)
    return {REPRODUCED: DISAGREES, CONTRADICTED: AGREES}.get(verdict, NOT_DETECTED)


def subject_rows(plan: Plan, by_subject: Mapping[str, Sequence[Claim]]) -> list[dict[str, Any]]:
    """Per subject: name, spec, interface and, per claim, verdict, powered, expected outcome and agreement."""
    rows = []
    for subject in plan.all_subjects:
        cells = {}
        for c in by_subject.get(subject.name, ()):
            known = subject.expectation(c.key)
            cells[c.key] = {
                "title": c.title,
                "verdict": c.verdict,
                "powered": c.powered,
                "reason": c.reason,
                "expected": known[0] if known else None,
                "expected_why": known[1] if known else None,
                "agreement": agreement(c.verdict, known[0]) if known else None,
            }
        rows.append(
            {
                "name": subject.name,
                "spec": subject.spec,
                "stand_in": subject.stand_in,
                "interface": subject.interface,
                "claims": cells,
            }
        )
    return rows


def subjects_table(plan: Plan, by_subject: Mapping[str, Sequence[Claim]]) -> list[str]:
    """The subjects x claims table: every verdict, and beside it the known answer and whether it matches."""
    rows = subject_rows(plan, by_subject)
    keys = [c.key for c in by_subject[plan.all_subjects[0].name]]
    titles = {c.key: c.title for c in by_subject[plan.all_subjects[0].name]}
    mark = {AGREES: "✓", NOT_DETECTED: "(✓)", DISAGREES: "✗", UNDECIDED: "?"}
    lines = [
        "## Subjects x claims",
        "",
        "| subject | " + " | ".join(f"({k}) {titles[k]}" for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    tally = {AGREES: 0, NOT_DETECTED: 0, DISAGREES: 0, UNDECIDED: 0}
    for row in rows:
        cells = []
        for k in keys:
            cell = row["claims"].get(k)
            if cell is None:
                cells.append("–")
                continue
            text = cell["verdict"] + ("" if cell["powered"] is not False else " (unpowered)")
            if cell["expected"]:
                tally[cell["agreement"]] += 1
                text += f"; expected {cell['expected']} {mark[cell['agreement']]}"
            cells.append(text)
        lines.append(f"| **{row['name']}** | " + " | ".join(cells) + " |")
    lines += ["", "| subject | what reaches its backbone | known answers |", "|---|---|---|"]
    for subject in plan.all_subjects:
        known = "; ".join(f"({k}) {o}: {w}" for k, o, w in subject.expected) or "none"
        lines.append(f"| {subject.name} | {subject.interface} | {known} |")
    lines += [
        "",
        f"*Known answers*: {tally[AGREES]} agree (✓), {tally[NOT_DETECTED]} without a false detection but "
        f'unconfirmed ("(✓)"), {tally[DISAGREES]} disagree (✗), {tally[UNDECIDED]} undecided at this n (?). An '
        'expected "reproduced" agrees only when reproduced; an expected "not reproduced" agrees only when '
        "contradicted (the data rule the effect out), disagrees when judged reproduced for a subject that cannot "
        'show it (a false detection) and is "(✓)" when inconclusive. The per-subject sections below give every '
        "number.",
        "",
    ]
    return lines


def diagnostics(mech: Path) -> list[str]:
    """Markdown of a subject's mechanistic measurements that carry no claim of their own (empty when absent).

    The section 5.4 diagnostic (``mech/diagnostic``: does erasing the acoustic concept reduce text
    decodability?), with the utterances and positions each eraser was fitted on, and the logit lens over every
    position of the prompt (``mech/lens/mech/lens_all.json``).
    """
    lines: list[str] = []
    erased, bad = _read_typed(mech / "diagnostic" / ERASURE_FILE, read_erasure)
    if bad:
        lines += [bad, ""]
    elif erased is not None and erased.diagnostic is not None:
        lines += ["#### Does erasing the acoustic concept reduce text decodability? (section 5.4)", ""]
        lines += [erased.diagnostic.markdown()]
        if erased.support:
            lines += [
                "Fitting data of the erasers: utterances (positions) per concept dimension.",
                "",
                "| concept | dimensions with support | utterances | positions | per dimension |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {x.concept} | {x.n_supported} of {len(x.dims)} | {x.total_utterances} | {x.total_positions} "
                f"| {x.describe()} |"
                for x in erased.support
            ]
            lines.append("")
    lens_all, bad = _read_typed(mech / "lens" / LENS_ALL_FILE, read_lens)
    if bad:
        lines += [bad, ""]
    elif lens_all is not None:
        lines += ["#### Logit lens over every position of the prompt", "", lens_all.markdown()]
    return lines


def markdown_subjects(
    plan: Plan,
    by_subject: Mapping[str, Sequence[Claim]],
    header: Sequence[str],
    extra: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The findings page of a several-subject plan: the subjects x claims table, then each subject's claims.

    ``extra``: per subject, Markdown lines appended to its section (``diagnostics``).
    """
    lines = [*header, *subjects_table(plan, by_subject)]
    for subject in plan.all_subjects:
        body = markdown(by_subject[subject.name], []).split("\n")
        lines += [f"## {subject.name}: {subject.interface}", ""]
        lines += [("#" + line) if line.startswith("## ") else line for line in body]
        more = list((extra or {}).get(subject.name, ()))
        if more:
            lines += ["### Mechanistic measurements without a claim", "", *more, ""]
    return "\n".join(lines)


def write_findings(
    out: Path,
    plan: Plan,
    claims: Sequence[Claim],
    meta: Mapping[str, Any],
    timings: Mapping[str, Mapping[str, Any]],
    by_subject: Mapping[str, Sequence[Claim]] | None = None,
) -> Path:
    """Write ``findings.md`` and ``findings.json`` into ``out``; returns the Markdown path.

    ``claims``: the first subject's; ``by_subject``: every subject's (``judge_subjects``) when the plan has
    several, which adds the subjects x claims table and a section per subject.
    """
    header = header_lines(plan, meta, timings)
    several = by_subject is not None and len(plan.all_subjects) > 1
    extra = {
        s.name: diagnostics(subject_mech_dir(plan, out, s)) for s in plan.all_subjects if s.stand_in is None
    }
    if several:
        page = markdown_subjects(plan, by_subject, header, extra)  # type: ignore[arg-type]
    else:
        page = markdown(claims, header)
        more = extra.get(plan.all_subjects[0].name)
        page += "\n".join(["## Mechanistic measurements without a claim", "", *more, ""]) if more else ""
    data: dict[str, Any] = {
        "meta": dict(meta),
        "plan": plan.to_dict(),
        "timings": dict(timings),
        "claims": [c.to_dict() for c in claims],
    }
    if several:
        data["subjects"] = subject_rows(plan, by_subject)  # type: ignore[arg-type]
        data["subject_claims"] = {k: [c.to_dict() for c in v] for k, v in by_subject.items()}  # type: ignore[union-attr]
    for name, text in ((FINDINGS_JSON, json.dumps(data, indent=1, ensure_ascii=False)), (FINDINGS_MD, page)):
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    return out / FINDINGS_MD
