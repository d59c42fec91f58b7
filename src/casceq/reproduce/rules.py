"""Verdict rules shared by the claims: three outcomes, one chance level per task, intervals and power.

Every claim ends in one of three verdicts:

- ``reproduced``: the 95% interval of the claim's effect excludes the null in the paper's direction; for a claim
  of *no difference* (the ceiling (a), the implicit cascade (h)) an equivalence test (two one-sided tests, the
  90% interval inside the stated margin);
- ``contradicted``: the interval excludes the effect the claim means (``REFERENCE``) or lies beyond the
  equivalence margin;
- ``inconclusive``: anything else, with the smallest effect this n detects with 80% power (the minimum
  detectable effect, MDE) printed beside it. "Not significant" is never "reproduced".

A task on which a claim cannot be tested at all (a system it relies on is at chance, a stage did not run, data
are missing) is ``not testable here`` in the per-task table; a claim with no testable task is inconclusive.
Task verdicts combine as: any contradicted task contradicts; else any reproduced task reproduces; else
inconclusive.

Chance has ONE definition (``chance_level``), used by every gate of every claim: the gold majority share of the
evaluated items, at least 1/C. A system is above chance when the lower end of its 95% Wilson interval exceeds
it; every system a claim relies on is gated.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from casceq.stats.power import POWER, mde, tost, tost_mde
from casceq.stats.tests import benjamini_hochberg

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
"""The claim-level verdicts (``NOT_TESTABLE`` is a task-level verdict only)."""

ALPHA = 0.05
"""Level of the tests: two-sided 95% intervals for directional claims, 90% intervals (two one-sided tests at
0.05) for equivalence claims, BH q-values."""

Z95 = 1.959963984540054
"""Normal quantile of two-sided 95% intervals (standard errors recovered from reported CIs)."""

REFERENCE: Mapping[str, float] = {
    "a": 0.05,
    "b": 0.10,
    "c": 0.20,
    "d": 0.20,
    "e": 0.10,
    "f": 0.05,
    "g": 0.10,
    "h": 0.10,
}
"""The effect each claim means, in the unit of its statistic: the equivalence margin of (a) (accuracy points)
and (h) (κ), and the smallest effect that would count as the paper's for (b) Δκ, (c) overlap above its null,
(d) κ difference, (e) difference of accuracy drops, (f) rise of lens precision, (g) text drop minus control drop. These are our reading of
the paper's wording ("much more", "far above", "about as well"), not numbers from its tables (this repository
holds none); the findings page states them. ``contradicted`` means the interval excludes them."""

BH_FAMILIES = ("paper", "call")
"""BH families of the McNemar q-values used by the rules: ``paper`` = the speech LLM's tests against each
cascade, per task and condition (the paper's family); ``call`` = every pair, task and condition of the run (what
``casceq compare`` reports as ``q_value``)."""


@dataclass(frozen=True)
class TaskVerdict:
    """The verdict of one claim on one task (or one stage), with the numbers behind it.

    ``mde`` is the minimum detectable effect (80% power) of the task's test at this n, in the unit of the
    claim's statistic (for an equivalence claim: the smallest margin it could establish); ``powered`` says
    whether it is at most the claim's ``REFERENCE`` effect (None when no test ran).
    """

    task: str
    verdict: str
    reason: str
    numbers: str = ""
    mde: float | None = None
    powered: bool | None = None

    def __post_init__(self) -> None:
        # Rules compute these from numpy values; the JSON writer takes only Python scalars (a numpy bool here
        # once made the findings writer fail after an 85-minute run).
        if self.mde is not None:
            object.__setattr__(self, "mde", float(self.mde))
        if self.powered is not None:
            object.__setattr__(self, "powered", bool(self.powered))


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, its rule, its overall verdict and the per-task evidence.

    Attributes:
        key: Letter in the findings page (``"a"`` .. ``"h"``).
        title: Short name.
        claim: The paper's claim in one sentence.
        rule: The verdict rule in words (with its null, margin or reference effect).
        verdict: One of ``VERDICTS``.
        reason: Why (the deciding task, or why nothing could decide).
        tasks: Per-task verdicts.
    """

    key: str
    title: str
    claim: str
    rule: str
    verdict: str
    reason: str
    tasks: tuple[TaskVerdict, ...] = ()

    @property
    def powered(self) -> bool | None:
        """Whether every tested task was powered for the claim's reference effect (None: nothing tested)."""
        flags = [t.powered for t in self.tasks if t.powered is not None]
        return all(flags) if flags else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "key": self.key,
            "title": self.title,
            "claim": self.claim,
            "rule": self.rule,
            "verdict": self.verdict,
            "reason": self.reason,
            "powered": self.powered,
            "tasks": [dict(t.__dict__) for t in self.tasks],
        }


def combine(tasks: Sequence[TaskVerdict], empty_reason: str = "no task could test it") -> tuple[str, str]:
    """Overall verdict: any contradicted task contradicts; else any reproduced one reproduces; else inconclusive."""
    bad = [t for t in tasks if t.verdict == CONTRADICTED]
    if bad:
        return CONTRADICTED, "; ".join(f"{t.task}: {t.reason}" for t in bad)
    passed = [t for t in tasks if t.verdict == REPRODUCED]
    if passed:
        rest = [t.task for t in tasks if t.verdict != REPRODUCED]
        extra = f" (not decided on {', '.join(rest)})" if rest else ""
        return REPRODUCED, f"holds on {', '.join(t.task for t in passed)}{extra}"
    reasons = "; ".join(f"{t.task}: {t.reason}" for t in tasks)
    return INCONCLUSIVE, reasons or empty_reason


def wilson_low(correct: int, n: int) -> float:
    """Lower end of the 95% Wilson interval (0 for n = 0)."""
    if n <= 0:
        return 0.0
    p = correct / n
    denom = 1 + Z95**2 / n
    centre = p + Z95**2 / (2 * n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return (centre - half) / denom


def chance_level(gold_counts: Sequence[int], n_classes: int) -> float:
    """THE chance accuracy of a task, used by every rule: the gold majority share, at least 1/C."""
    total = sum(gold_counts)
    return max(max(gold_counts) / total, 1 / n_classes) if total else 1 / n_classes


def chance_of_labels(gold: Sequence[str], n_classes: int) -> float:
    """``chance_level`` from gold labels."""
    return chance_level(list(Counter(gold).values()), n_classes)


def item_of(example_id: str, item: str | None = None) -> str:
    """The item of a clip: its ``item`` field, else the example id before "@" (ids are ``example@voice``)."""
    return item if item else example_id.split("@")[0]


def fmt(x: float | None, nd: int = 3) -> str:
    """A number for the page ('n/a' for None or NaN)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def fmt_ci(ci: Sequence[float | None] | None) -> str:
    """An interval for the page."""
    return "[n/a]" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def directional(
    task: str, estimate: float, se: float | None, reference: float, numbers: str, what: str
) -> TaskVerdict:
    """Three-outcome verdict of a claim that ``what`` is above 0 (estimate already minus its null).

    Reproduced when the 95% interval lies above 0; contradicted when it lies below ``reference`` (the effect
    the claim means) and does not exclude 0; else inconclusive with the MDE.
    """
    if se is None or not se > 0 or not math.isfinite(estimate):
        return TaskVerdict(task, NOT_TESTABLE, f"no interval for {what}", numbers)
    lo, hi = estimate - Z95 * se, estimate + Z95 * se
    m = mde(se, alpha=ALPHA / 2)
    nums = (
        f"{numbers}; {what} {fmt(estimate)} [{fmt(lo)}, {fmt(hi)}], MDE {fmt(m)} (reference {fmt(reference)})"
    )
    powered = m <= reference
    if lo > 0:
        small = f", smaller than the reference {fmt(reference)}" if hi < reference else ""
        return TaskVerdict(task, REPRODUCED, f"95% CI of {what} above 0{small}", nums, m, powered)
    if hi < reference:
        why = f"95% CI of {what} excludes the reference effect {fmt(reference)}"
        return TaskVerdict(task, CONTRADICTED, why, nums, m, powered)
    why = f"95% CI of {what} holds both 0 and {fmt(reference)}; MDE at this n {fmt(m)}"
    return TaskVerdict(task, INCONCLUSIVE, why, nums, m, powered)


def equivalence(
    task: str, estimate: float, se: float | None, margin: float, numbers: str, what: str, *, two_sided: bool
) -> TaskVerdict:
    """Three-outcome verdict of a claim of no difference, by two one-sided tests at ``ALPHA``.

    ``two_sided``: equivalence ``|effect| < margin``; else non-superiority ``effect < margin``. Reproduced when
    the 90% interval lies inside; contradicted when it lies wholly beyond a margin; else inconclusive with the
    smallest margin this n could establish with 80% power when the true effect is 0.
    """
    if se is None or not se > 0 or not math.isfinite(estimate):
        return TaskVerdict(task, NOT_TESTABLE, f"no interval for {what}", numbers)
    t = tost(estimate, se, -margin if two_sided else -math.inf, margin, alpha=ALPHA)
    lo, hi = t.ci
    m = tost_mde(se, ALPHA, POWER) if two_sided else mde(se, ALPHA, POWER)
    bound = f"±{fmt(margin)}" if two_sided else f"< {fmt(margin)}"
    nums = (
        f"{numbers}; {what} {fmt(estimate)}, 90% CI [{fmt(lo)}, {fmt(hi)}], TOST p {fmt(t.p_value, 4)} "
        f"(margin {bound}), smallest margin detectable {fmt(m)}"
    )
    powered = m <= margin
    if t.equivalent:
        return TaskVerdict(task, REPRODUCED, f"90% CI of {what} within {bound}", nums, m, powered)
    if lo > margin or (two_sided and hi < -margin):
        return TaskVerdict(
            task, CONTRADICTED, f"90% CI of {what} beyond the margin {fmt(margin)}", nums, m, powered
        )
    why = (
        f"90% CI of {what} crosses the margin {fmt(margin)}; smallest margin this n could establish {fmt(m)}"
    )
    return TaskVerdict(task, INCONCLUSIVE, why, nums, m, powered)


def family_q_values(
    pairs: Sequence[Mapping[str, Any]], family: str, speech: str, cascades: Sequence[str]
) -> dict:
    """BH q-values of the McNemar p-values of ``pairs`` (compare.json rows) over a named family.

    ``family="paper"``: within each (task, condition), the tests of ``speech`` against each of ``cascades``;
    ``"call"``: all rows together. Returns ``{(a, b, task, condition): q}`` for the rows in the family.
    """
    if family not in BH_FAMILIES:
        raise ValueError(f"unknown BH family {family!r}; use one of {', '.join(BH_FAMILIES)}")
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in pairs:
        if family == "call":
            groups.setdefault("all", []).append(r)
        elif {r["a"], r["b"]} & {speech} and ({r["a"], r["b"]} - {speech}) <= set(cascades):
            groups.setdefault((r["task"], r["condition"]), []).append(r)
    out = {}
    for rows in groups.values():
        q = benjamini_hochberg([float(r["mcnemar_p"]) for r in rows])
        out.update(
            {(r["a"], r["b"], r["task"], r["condition"]): float(v) for r, v in zip(rows, q, strict=True)}
        )
    return out


class CompareView:
    """Lookups into a ``compare.json`` dict (``casceq.stats.results.CompareResult.to_dict``)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def accuracy(self, system: str, task: str, condition: str) -> Mapping[str, Any] | None:
        """The accuracy row, or None."""
        for r in self.data.get("accuracy", ()):
            if (r["system"], r["task"], r["condition"]) == (system, task, condition):
                return r  # type: ignore[no-any-return]
        return None

    def pair(self, a: str, b: str, task: str, condition: str) -> dict[str, Any] | None:
        """The pair row oriented as (a, b) (McNemar counts swapped when stored as (b, a)), or None."""
        for r in self.data.get("pairs", ()):
            if (r["task"], r["condition"]) != (task, condition):
                continue
            if (r["a"], r["b"]) == (a, b):
                return dict(r)
            if (r["a"], r["b"]) == (b, a):
                out = dict(r, a=a, b=b)
                out["a_right_b_wrong"], out["a_wrong_b_right"] = r["a_wrong_b_right"], r["a_right_b_wrong"]
                return out
        return None

    def confound(self, speech: str, matched: str, mismatched: str, task: str, condition: str) -> Any:
        """The backbone-confound row of this triple, or None."""
        for r in self.data.get("backbone_confound", ()):
            key = (r["speech_llm"], r["matched"], r["mismatched"], r["task"], r["condition"])
            if key == (speech, matched, mismatched, task, condition):
                return r
        return None

    def chance(self, task: str, condition: str, n_classes: int) -> float:
        """``chance_level`` of the task's aligned items (1/C when no label distribution is stored)."""
        for r in self.data.get("label_distribution", ()):
            if (r["task"], r["condition"]) == (task, condition):
                return chance_level(r["gold"][:n_classes], n_classes)
        return 1 / n_classes

    def above_chance(self, system: str, task: str, condition: str, n_classes: int) -> tuple[bool, str]:
        """Whether the lower end of the system's accuracy interval exceeds chance, and the numbers in words.

        The interval is the one ``compare`` stored (item-aware when the run records items); a row without one
        gets the Wilson interval of its clips.
        """
        row = self.accuracy(system, task, condition)
        if row is None:
            return False, f"no {system} predictions on {task} ({condition})"
        ci = row.get("ci")
        low = ci[0] if ci and ci[0] is not None else wilson_low(round(row["accuracy"] * row["n"]), row["n"])
        chance = self.chance(task, condition, n_classes)
        words = f"{system} accuracy {fmt(row['accuracy'])} {fmt_ci(ci)} vs chance {fmt(chance)}"
        return low > chance, words

    def gate(self, systems: Sequence[str], task: str, condition: str, n_classes: int) -> tuple[bool, str]:
        """Every system above chance? With the failing systems' numbers in words (all of them when none fail)."""
        checks = [self.above_chance(s, task, condition, n_classes) for s in systems]
        failed = [w for ok, w in checks if not ok]
        return not failed, "; ".join(failed or [w for _, w in checks])
