"""The findings page: every claim of the paper with our numbers and a verdict, as ``findings.md`` and ``.json``.

``judge(out, plan, timings)`` reads the reproduction folder (``run/compare.json``, ``run/predictions.jsonl``,
``mech/lens/``, ``mech/implicit/``, ``mech/erasure/``) and applies the rules of ``claims_behaviour`` and
``claims_mech``; ``write_findings`` writes the page with a header recording how it was made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from casceq.reproduce.plan import SPEECH_TASKS, TEXT_TASKS, Plan
from casceq.reproduce.rules import INCONCLUSIVE, REFERENCE, Claim, CompareView
from casceq.stats.results import CompareResult

FINDINGS_MD = "findings.md"
FINDINGS_JSON = "findings.json"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


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
    """Every claim's verdict from the reproduction folder ``out`` (stored results only: no model runs).

    ``bh_family`` names the Benjamini-Hochberg family of the McNemar q-values (``casceq.reproduce.rules``).
    ``compare_result``: the statistics of ``out/run``'s predictions when a stage of this call computed them
    (the noise claim reads their accuracies); None: computed here.
    """
    from casceq.reproduce import claims_behaviour as cb
    from casceq.reproduce import claims_mech as cm

    text = [t for t in TEXT_TASKS if t in plan.n]
    speech = [t for t in SPEECH_TASKS if t in plan.n]
    data = _read(out / "run" / "compare.json")
    claims: list[Claim] = []
    if data is None:
        why = _missing("behavioural", timings, plan)
        for key, title in (("a", "Ceiling"), ("b", "Backbone confound"), ("c", "Error overlap")):
            claims.append(Claim(key, title, "", "", INCONCLUSIVE, why))
        claims += [Claim("d", "Text-insufficient tasks", "", "", INCONCLUSIVE, why)]
        claims += [Claim("e", "Noise", "", "", INCONCLUSIVE, why)]
    else:
        from casceq.io.interchange import read_predictions

        pred_file = out / "run" / "predictions.jsonl"
        preds = read_predictions([pred_file]) if pred_file.is_file() else []
        data = item_statistics(data, preds, plan)
        cmp = CompareView(data)
        labels, correct, items = cb.label_table(preds), cb.correctness_table(preds), cb.item_table(preds)
        claims += [
            cb.claim_ceiling(cmp, text, bh_family, correct or None, items),
            cb.claim_confound(cmp, text),
            cb.claim_overlap(cmp, text, labels or None, items),
            cb.claim_text_insufficient(cmp, text, speech),
            _noise(out, plan, cmp, text, compare_result),
        ]
    mech = out / "mech"
    lens, control = _read(mech / "lens" / "mech" / "lens.json"), _read(mech / "lens" / "lens_control.json")
    claims.append(cm.claim_lens(lens, control, _missing("lens", timings, plan)))
    claims.append(
        cm.claim_erasure(
            _read(mech / "erasure" / "mech" / "erasure.json"), _missing("erasure", timings, plan)
        )
    )
    claims.append(
        cm.claim_implicit(
            _read(mech / "implicit" / "mech" / "implicit.json"), _missing("implicit", timings, plan)
        )
    )
    return claims


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
    import dataclasses

    from casceq.reproduce.rules import item_of
    from casceq.stats.compare import compare

    unnamed = [p for p in preds if p.item is None and "@" in p.example_id]
    old = any("n_items" not in r for r in (*data.get("accuracy", ()), *data.get("pairs", ())))
    if not preds or not (unnamed or old):
        return data
    named = [dataclasses.replace(p, item=item_of(p.example_id)) if p.item is None else p for p in preds]
    present = {p.system for p in preds}
    kinds = {s: k for s, k in SYSTEM_KINDS.items() if s in present}
    result = compare(named, n_bootstrap=plan.bootstrap, seed=plan.seed, intersect=True, kinds=kinds)
    fresh = json.loads(result.to_json())
    return {**data, **{k: fresh[k] for k in ("accuracy", "pairs", "backbone_confound", "label_distribution")}}


def _noise(
    out: Path, plan: Plan, cmp: CompareView, text: Sequence[str], result: CompareResult | None = None
) -> Claim:
    """Claim (e); ``result``: the run's statistics (only their accuracies are read: any resamples, any kinds)."""
    from casceq.io.interchange import read_predictions
    from casceq.report.analysis import noise_points, reversals, snr_of
    from casceq.reproduce import claims_behaviour as cb
    from casceq.stats.compare import compare

    noisy = [c for c in plan.conditions if c != "clean"]
    if not noisy:
        return cb.claim_noise(cmp, text, {})
    low = min(noisy, key=lambda c: snr_of(c) or 0.0)
    preds = read_predictions([out / "run" / "predictions.jsonl"])
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
        f"- n per task: {sizes}; conditions: {', '.join(plan.conditions)}; voices: {', '.join(plan.voices)}",
        "- mechanistic suite: "
        + (f"{plan.mech_n} utterances per capture / items per task" if plan.mech else "skipped"),
        f"- models: {', '.join(f'{k} = {v}' for k, v in vars(plan.models).items() if v)}",
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


def write_findings(
    out: Path,
    plan: Plan,
    claims: Sequence[Claim],
    meta: Mapping[str, Any],
    timings: Mapping[str, Mapping[str, Any]],
) -> Path:
    """Write ``findings.md`` and ``findings.json`` into ``out``; returns the Markdown path."""
    page = markdown(claims, header_lines(plan, meta, timings))
    data = {
        "meta": dict(meta),
        "plan": plan.to_dict(),
        "timings": dict(timings),
        "claims": [c.to_dict() for c in claims],
    }
    for name, text in ((FINDINGS_JSON, json.dumps(data, indent=1, ensure_ascii=False)), (FINDINGS_MD, page)):
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    return out / FINDINGS_MD
