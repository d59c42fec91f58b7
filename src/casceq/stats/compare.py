"""The behavioural comparison: accuracy, kappa, error overlap, McNemar + BH and the backbone confound.

``compare(predictions)`` is what ``casceq compare`` runs. Per (task, condition) it aligns every system's
answers, resamples items (seeded, the same draws for all pairs), and computes every pair's statistics with
array operations (see ``casceq.stats.agreement``). The item is the unit of every interval and test
(``casceq.stats.cluster``, ``docs/statistics.md``); point estimates are per clip. BH adjusts the McNemar
p-values of all reported pairs, tasks and conditions of the call together.

System kinds. The backbone confound needs to know which systems are speech LLMs and which are cascades.
Pass ``kinds`` (``{"name": "cascade" | "speech_llm" | "text"}``) when you know them. Otherwise a system whose
predictions carry transcripts, or whose name contains "cascade", is a cascade, any other a speech LLM.
Text-only systems look like speech LLMs in prediction files: declare them as ``"text"`` to keep them out of
the confound rows. The kinds used are listed in ``CompareResult.notes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.stats.agreement import bootstrap_pairwise_kappa, encode, pairwise_kappa, percentile_interval
from casceq.stats.align import SystemInfo, TaskLike, align, resolve_tasks, system_info
from casceq.stats.cluster import (
    cluster_mcnemar,
    clustered_binomial_greater,
    clustered_proportion_ci,
    per_item_sums,
)
from casceq.stats.errors import chance_overlap, overlap, pair_counts
from casceq.stats.results import (
    Accuracy,
    Agreement,
    AlignedGroup,
    BackboneConfound,
    CompareResult,
    InvalidCount,
    LabelDistribution,
)
from casceq.stats.tests import benjamini_hochberg
from casceq.types import INVALID, Prediction

KINDS = ("cascade", "speech_llm", "text")


def compare(
    predictions: Sequence[Prediction],
    *,
    tasks: Mapping[str, TaskLike] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    intersect: bool = False,
    kinds: Mapping[str, str] | None = None,
    bh_family: str = "call",
) -> CompareResult:
    """Compute every behavioural statistic of the paper from prediction rows.

    Args:
        predictions: Rows of any number of systems, tasks and conditions.
        tasks: Task definitions by name; default: the registry (``casceq.tasks.get_task``), inferring labels
            of unregistered tasks from the data (noted in ``CompareResult.notes``).
        pairs: System pairs (a, b) to report; default all pairs, in order of first appearance.
        n_bootstrap: Bootstrap resamples (of items) for the kappa intervals (0: no intervals).
        seed: Seed of the bootstrap generator (one fresh ``default_rng(seed)`` per task and condition).
        intersect: Compare on the example ids all systems of a task and condition share instead of raising.
        kinds: Optional system kinds (see the module docstring).
        bh_family: Benjamini-Hochberg family of the McNemar q-values: ``"call"`` (default: every pair, task and
            condition together) or ``"speech_vs_cascade"`` (per task and condition, the tests of a speech LLM
            against a cascade, the paper's family; the other pairs form their own family there).

    Returns:
        The typed results; ``.to_json()`` gives the ``--json`` output.

    Raises:
        InputError: Empty or inconsistent input, unknown systems in ``pairs`` or ``kinds``.
    """
    if not predictions:
        raise InputError("no predictions to compare")
    if n_bootstrap < 0:
        raise InputError(f"--bootstrap must be >= 0, got {n_bootstrap}")
    notes: list[str] = []
    if tasks is None:
        tasks, notes = resolve_tasks(predictions)
    info = system_info(predictions)
    for name in [s for pair in pairs or () for s in pair] + list(kinds or {}):
        if name not in info:
            raise InputError(f"unknown system {name!r}; the inputs hold: {', '.join(info)}")
    bad_kinds = {k: v for k, v in (kinds or {}).items() if v not in KINDS}
    if bad_kinds:
        raise InputError(f"unknown system kind(s) {bad_kinds}; use one of {', '.join(KINDS)}")
    kind, kind_note = infer_kinds(info, kinds or {})
    notes.append(kind_note)
    groups, align_notes = align(predictions, tasks, intersect=intersect)

    accuracy: list[Accuracy] = []
    invalid: list[InvalidCount] = []
    agreements: list[dict[str, Any]] = []
    confound: list[BackboneConfound] = []
    distributions: list[LabelDistribution] = []
    for g in groups:
        clusters, n_items = g.clusters()
        accuracy += _accuracy(g, clusters, n_items)
        invalid += [
            InvalidCount(
                s, g.task, g.condition, k := labels.count(INVALID), k / len(labels), n_items, len(labels)
            )
            for s, labels in zip(g.systems, g.labels, strict=True)
        ]
        task = tasks[g.task]
        if task.open_answer:
            continue
        categories = (*task.labels, INVALID)
        codes = np.stack([encode(labels, categories) for labels in g.labels])
        correct = np.array(g.correct, dtype=bool)
        distributions.append(_distribution(g, codes, categories))
        wanted = _pairs_in(g.systems, pairs)
        confound_triples = _confound_triples(g.systems, info, kind)
        needed = list(dict.fromkeys(wanted + [p for s, m, x in confound_triples for p in ((s, m), (s, x))]))
        if not needed:
            continue
        index = {name: i for i, name in enumerate(g.systems)}
        pair_idx = np.array([[index[a], index[b]] for a, b in needed], dtype=np.int64)
        point = pairwise_kappa(codes, pair_idx, len(categories))[0]
        boot = None
        if n_bootstrap > 0:
            boot = bootstrap_pairwise_kappa(codes, pair_idx, len(categories), clusters, n_bootstrap, seed)
        cis = percentile_interval(boot) if boot is not None else None
        n_clips = len(g.example_ids)
        tests = _pair_tests(codes, correct, pair_idx[: len(wanted)], clusters, n_items, task.n_classes)
        for j, ((a, b), pair_tests) in enumerate(zip(wanted, tests, strict=True)):
            agreements.append(
                dict(
                    a=a,
                    b=b,
                    task=g.task,
                    condition=g.condition,
                    n=n_clips,
                    n_items=n_items,
                    kappa=float(point[j]),
                    kappa_ci=None if cis is None else (float(cis[j, 0]), float(cis[j, 1])),
                    matched=info[a].backbone is not None and info[a].backbone == info[b].backbone,
                    **pair_tests,
                )
            )
        col = {p: j for j, p in enumerate(needed)}
        jm = np.array([col[(s, m)] for s, m, _ in confound_triples], dtype=np.int64)
        jx = np.array([col[(s, x)] for s, _, x in confound_triples], dtype=np.int64)
        delta_cis = percentile_interval(boot[:, jm] - boot[:, jx]) if boot is not None and len(jm) else None
        for t, (s, m, x) in enumerate(confound_triples):
            delta_ci = None if delta_cis is None else (float(delta_cis[t, 0]), float(delta_cis[t, 1]))
            confound.append(
                BackboneConfound(
                    speech_llm=s,
                    backbone=str(info[s].backbone),
                    task=g.task,
                    condition=g.condition,
                    matched=m,
                    mismatched=x,
                    mismatched_backbone=str(info[x].backbone),
                    kappa_matched=float(point[jm[t]]),
                    kappa_mismatched=float(point[jx[t]]),
                    delta_kappa=float(point[jm[t]] - point[jx[t]]),
                    delta_ci=delta_ci,
                    n_items=n_items,
                    n_clips=len(g.example_ids),
                )
            )
    notes += coverage_notes(predictions, groups, agreements, pairs, tasks)
    qvals = _q_values(agreements, bh_family, kind)
    return CompareResult(
        accuracy=tuple(accuracy),
        pairs=tuple(Agreement(**r, q_value=float(q)) for r, q in zip(agreements, qvals, strict=True)),
        backbone_confound=tuple(confound),
        invalid=tuple(invalid),
        label_distribution=tuple(distributions),
        n_bootstrap=n_bootstrap,
        seed=seed,
        notes=tuple(notes + align_notes),
        groups=tuple(groups),
    )


BH_FAMILIES = ("call", "speech_vs_cascade")


def _q_values(rows: Sequence[Mapping[str, Any]], family: str, kind: Mapping[str, str]) -> np.ndarray:
    """BH q-values of the rows' McNemar p-values within each family (see ``compare(bh_family=...)``)."""
    if family not in BH_FAMILIES:
        raise InputError(f"unknown BH family {family!r}; use one of {', '.join(BH_FAMILIES)}")
    if family == "call":
        return benjamini_hochberg([r["mcnemar_p"] for r in rows])
    groups: dict[tuple[str, str, bool], list[int]] = {}
    for i, r in enumerate(rows):
        paper = {kind[r["a"]], kind[r["b"]]} == {"speech_llm", "cascade"}
        groups.setdefault((r["task"], r["condition"], paper), []).append(i)
    q = np.empty(len(rows))
    for idx in groups.values():
        q[idx] = benjamini_hochberg([rows[i]["mcnemar_p"] for i in idx])
    return q


def infer_kinds(info: Mapping[str, SystemInfo], declared: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Decide each system's kind: declared, else cascade by transcripts or name, else speech LLM.

    A system is a cascade when its predictions carry transcripts or its name contains "cascade"
    (interchange files exported without corpus text have no transcripts). Everything else is taken for a
    speech LLM; text-only systems must be declared.

    Returns:
        ``(kind by system, a note saying which kinds were declared and which inferred)``.
    """
    kind, how = {}, []
    for name, i in info.items():
        if name in declared:
            kind[name], why = declared[name], "declared"
        elif i.has_transcript:
            kind[name], why = "cascade", "has transcripts"
        elif "cascade" in name.lower():
            kind[name], why = "cascade", "name"
        else:
            kind[name], why = "speech_llm", "no transcripts"
        how.append(f"{name}={kind[name]} ({why})")
    return kind, "system kinds (override with --kind NAME=KIND): " + ", ".join(how)


def _pair_tests(
    codes: np.ndarray,
    correct: np.ndarray,
    pairs: np.ndarray,
    clusters: np.ndarray,
    n_items: int,
    n_classes: int,
) -> list[dict[str, Any]]:
    """Error overlap and McNemar of each pair, with item-aware intervals and tests (one dict per pair)."""
    counts = pair_counts(codes, correct, pairs)
    a, b = pairs[:, 0], pairs[:, 1]
    wrong_a, wrong_b = ~correct[a], ~correct[b]
    both = wrong_a & wrong_b
    per_item = per_item_sums(
        np.stack([both, both & (codes[a] == codes[b]), ~wrong_a & wrong_b, wrong_a & ~wrong_b]),
        clusters,
        n_items,
    )
    clips = per_item_sums(np.ones(clusters.size, dtype=np.int64), clusters, n_items)
    chance = chance_overlap(n_classes)
    out = []
    for j in range(len(pairs)):
        both_i, same_i, b_i, c_i = per_item[:, j]
        ov = overlap(int(counts.same_wrong[j]), int(counts.both_wrong[j]))
        shared = both_i > 0
        out.append(
            dict(
                both_wrong=int(counts.both_wrong[j]),
                same_wrong=int(counts.same_wrong[j]),
                overlap=ov,
                overlap_ci=None if ov is None else clustered_proportion_ci(same_i[shared], both_i[shared]),
                overlap_chance=chance,
                overlap_ratio=None if ov is None or chance is None else ov / chance,
                overlap_p=None
                if ov is None or chance is None or chance >= 1
                else clustered_binomial_greater(same_i[shared], both_i[shared], chance),
                a_right_b_wrong=int(counts.a_right_b_wrong[j]),
                a_wrong_b_right=int(counts.a_wrong_b_right[j]),
                mcnemar_p=cluster_mcnemar(b_i, c_i, clips),
            )
        )
    return out


def _accuracy(g: AlignedGroup, clusters: np.ndarray, n_items: int) -> list[Accuracy]:
    right = per_item_sums(np.array(g.correct, dtype=np.int64), clusters, n_items)
    clips = per_item_sums(np.ones(clusters.size, dtype=np.int64), clusters, n_items)
    n = len(g.example_ids)
    out = []
    for s, k in zip(g.systems, right, strict=True):
        ci = clustered_proportion_ci(k, clips)
        out.append(Accuracy(s, g.task, g.condition, n, int(k.sum()), int(k.sum()) / n, ci, n_items))
    return out


def _distribution(g: AlignedGroup, codes: np.ndarray, categories: tuple[str, ...]) -> LabelDistribution:
    k = len(categories)
    gold = np.bincount(np.array([categories.index(x) for x in g.gold]), minlength=k)
    return LabelDistribution(
        task=g.task,
        condition=g.condition,
        labels=categories,
        gold=tuple(int(c) for c in gold),
        systems={
            s: tuple(int(c) for c in np.bincount(codes[i], minlength=k)) for i, s in enumerate(g.systems)
        },
    )


def _pairs_in(systems: tuple[str, ...], pairs: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if pairs is None:
        return [(a, b) for i, a in enumerate(systems) for b in systems[i + 1 :]]
    present = set(systems)
    return [(a, b) for a, b in dict.fromkeys(pairs) if a in present and b in present and a != b]


def _confound_triples(
    systems: tuple[str, ...], info: Mapping[str, SystemInfo], kind: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """(speech LLM, matched cascade, mismatched cascade) triples present in one group."""
    cascades = [c for c in systems if kind[c] == "cascade" and info[c].backbone is not None]
    out = []
    for s in systems:
        backbone = info[s].backbone
        if kind[s] != "speech_llm" or backbone is None:
            continue
        matched = [c for c in cascades if info[c].backbone == backbone]
        mismatched = [c for c in cascades if info[c].backbone != backbone]
        out += [(s, m, x) for m in matched for x in mismatched]
    return out


def coverage_notes(
    predictions: Sequence[Prediction],
    groups: Sequence[AlignedGroup],
    agreements: Sequence[Mapping[str, Any]],
    pairs: Sequence[tuple[str, str]] | None,
    tasks: Mapping[str, TaskLike],
) -> list[str]:
    """Say what the tables leave out, and why: missing systems, pairs never compared, undefined kappas."""
    notes = []
    systems = list(dict.fromkeys(p.system for p in predictions))
    has_task = {(p.system, p.task) for p in predictions}
    for g in groups:
        for s in systems:
            if s in g.systems:
                continue
            if (s, g.task) not in has_task:
                note = f"system {s} has no predictions for task {g.task}: it is left out of that task"
            else:
                note = f"system {s} has no predictions for task {g.task} under condition {g.condition}"
            notes.append(note)
    classified = [s for s in systems if any(s in g.systems for g in groups if not tasks[g.task].open_answer)]
    wanted = pairs or [(a, b) for i, a in enumerate(classified) for b in classified[i + 1 :]]
    compared = {(r["a"], r["b"]) for r in agreements}
    notes += [
        f"pair {a}:{b} shares no classification task and condition"
        for a, b in wanted
        if (a, b) not in compared
    ]
    by_key = {(g.task, g.condition): g for g in groups}
    for r in agreements:
        if r["kappa"] == r["kappa"]:  # defined (not NaN)
            continue
        g = by_key[(r["task"], r["condition"])]
        seen = set(g.labels[g.systems.index(r["a"])]) | set(g.labels[g.systems.index(r["b"])])
        why = "chance agreement is 1"
        if len(seen) == 1:
            why = f"both systems gave one and the same label ({seen.pop()!r}) to every example, so {why}"
        notes.append(
            f"kappa of {r['a']} and {r['b']} on {r['task']} / {r['condition']} is undefined "
            f"(shown as a dash in tables, null in JSON): {why}"
        )
    return list(dict.fromkeys(notes))
