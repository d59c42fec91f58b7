"""Verdict rules shared by the claims: thresholds, chance levels and how task verdicts combine.

Every claim gets one of three verdicts:

- ``reproduced``: the rule's test passes on every task where it can be tested;
- ``not reproduced``: it fails on at least one testable task;
- ``not testable here``: no task can test it (a stage was skipped or failed, data are missing, or the speech LLM
  is at chance, so agreement statistics are uninformative).

A task is *testable* for a claim about the speech LLM's agreement only when the speech LLM is above chance there:
the lower end of its 95% Wilson interval exceeds the task's chance accuracy (the share of the gold majority
label, at least 1/C). A model at chance agrees with anything only by label bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE)

ALPHA = 0.05
"""Significance level of McNemar q-values and of the one-sided binomial test of error overlap."""

MIN_BOTH_WRONG = 10
"""Fewest shared errors for the error-overlap test (fewer: not testable)."""

Z95 = 1.959963984540054
"""Normal quantile of two-sided 95% intervals (standard errors recovered from reported CIs)."""


@dataclass(frozen=True)
class TaskVerdict:
    """The verdict of one claim on one task (or one stage), with the numbers behind it."""

    task: str
    verdict: str
    reason: str
    numbers: str = ""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, its rule, its overall verdict and the per-task evidence.

    Attributes:
        key: Letter in the findings page (``"a"`` .. ``"h"``).
        title: Short name.
        claim: The paper's claim in one sentence.
        rule: The verdict rule in words (with its thresholds).
        verdict: One of ``VERDICTS``.
        reason: Why (the failing or untestable task, the stage that was skipped).
        tasks: Per-task verdicts.
    """

    key: str
    title: str
    claim: str
    rule: str
    verdict: str
    reason: str
    tasks: tuple[TaskVerdict, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "key": self.key,
            "title": self.title,
            "claim": self.claim,
            "rule": self.rule,
            "verdict": self.verdict,
            "reason": self.reason,
            "tasks": [t.__dict__ for t in self.tasks],
        }


def combine(tasks: Sequence[TaskVerdict], empty_reason: str = "no task could test it") -> tuple[str, str]:
    """Overall verdict from task verdicts: any failure fails; else any success passes; else not testable."""
    failed = [t for t in tasks if t.verdict == NOT_REPRODUCED]
    if failed:
        return NOT_REPRODUCED, "; ".join(f"{t.task}: {t.reason}" for t in failed)
    passed = [t for t in tasks if t.verdict == REPRODUCED]
    if passed:
        untested = [t.task for t in tasks if t.verdict == NOT_TESTABLE]
        extra = f" (not testable on {', '.join(untested)})" if untested else ""
        return REPRODUCED, f"holds on {', '.join(t.task for t in passed)}{extra}"
    reasons = "; ".join(f"{t.task}: {t.reason}" for t in tasks)
    return NOT_TESTABLE, reasons or empty_reason


def wilson_low(correct: int, n: int) -> float:
    """Lower end of the 95% Wilson interval (0 for n = 0)."""
    if n <= 0:
        return 0.0
    p = correct / n
    denom = 1 + Z95**2 / n
    centre = p + Z95**2 / (2 * n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return (centre - half) / denom


def fmt(x: float | None, nd: int = 3) -> str:
    """A number for the page ('n/a' for None or NaN)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def fmt_ci(ci: Sequence[float | None] | None) -> str:
    """An interval for the page."""
    return "[n/a]" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


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
        """Chance accuracy: the gold majority share of the aligned items, at least 1/C."""
        for r in self.data.get("label_distribution", ()):
            if (r["task"], r["condition"]) == (task, condition) and sum(r["gold"]):
                return max(max(r["gold"]) / sum(r["gold"]), 1 / n_classes)
        return 1 / n_classes

    def above_chance(self, system: str, task: str, condition: str, n_classes: int) -> tuple[bool, str]:
        """Whether the system's Wilson lower bound exceeds chance, and the numbers in words."""
        row = self.accuracy(system, task, condition)
        if row is None:
            return False, f"no {system} predictions on {task} ({condition})"
        low = wilson_low(round(row["accuracy"] * row["n"]), row["n"])
        chance = self.chance(task, condition, n_classes)
        words = f"{system} accuracy {fmt(row['accuracy'])} {fmt_ci(row['ci'])} vs chance {fmt(chance)}"
        return low > chance, words
