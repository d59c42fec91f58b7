"""Power before compute: each claim's items for 80% power at its reference effect, and their wall time.

Each claim's statistic has a standard error ``sd / sqrt(items)``. The per-item standard deviation ``sd`` comes
from a finished reproduction when one is given (``from_findings``: the minimum detectable effect its findings
page printed at its n, since MDE scales as 1 / sqrt(n)), else from ``PLANNING_SD``: the standard errors of the
committed full run (docs/results/findings.md: 20 items x 2 voices, 40 RAVDESS clips, 40 mechanistic items,
5 Dec 2026) times the square root of its n. Wall time comes from the per-clip costs of ``casceq.reproduce.plan``
(measured ones from a ``timings.json`` when given).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from casceq.reproduce.plan import TEXT_TASKS, Costs, Plan, estimate_minutes, measured_costs

EQUIVALENCE = {"a": "one-sided", "h": "two-sided"}
"""Claims of no difference and their equivalence test (the others are directional)."""

VOICE_DEFF = 2.0
"""Design effect assumed for an interval of the committed run computed over its clips as if independent (it
predates items): the largest possible with its 2 voices per item (both voices always alike), so the planning n
errs towards too many items rather than too few."""

_INFLATE = math.sqrt(VOICE_DEFF)

PLANNING_SD: Mapping[str, tuple[float, str]] = {
    "a": (
        0.397,
        "SST-2 accuracies 0.750 / 0.850 at 40 clips, independent-binomial SE 0.089 x √20 (ignores the pairing, "
        "which lowers it, and the voices, which raise it)",
    ),
    "b": (
        0.119 * _INFLATE * math.sqrt(20),
        "AG News Δκ 95% CI [0.150, 0.616] (clip bootstrap): SE 0.119 x √2 x √20",
    ),
    "c": (
        math.sqrt(1 / 3 * 2 / 3 / 0.35) * _INFLATE,
        "√(p0(1 − p0) / r) x √2: null 1/3, r = 0.35 shared-error clips per item (AG News 7 of 20 items)",
    ),
    "d": (
        math.hypot(0.235 / 3.92 * _INFLATE, 0.277 / 3.92) * math.sqrt(20),
        "κ CIs AG News [0.765, 1.000] (clip bootstrap, x √2), RAVDESS [0.136, 0.413] (1 clip per item): "
        "SE 0.110 x √20 (2 RAVDESS clips per text item)",
    ),
    "e": (
        0.399 * _INFLATE,
        "AG News difference of drops 95% CI [−0.150, 0.200] (clip bootstrap): SE 0.089 x √2 x √20",
    ),
    "g": (
        0.703,
        "SST-2 accuracies text 0.550 / random 0.450 at 40 items, independent-binomial SE 0.111 x √40",
    ),
    "h": (
        1.320,
        "SST-2 κ_impl − κ_casc 95% CI [−0.890, −0.071] at 40 items: SE 0.209 x √40 (AG News: 0.759)",
    ),
}
"""Per-item standard deviation of each claim's statistic, from the committed full run, with its derivation.
Intervals that run computed over clips are widened by ``√VOICE_DEFF``."""

MECH_CLAIMS = ("f", "g", "h")


@dataclass(frozen=True)
class PowerRow:
    """One claim's planning line.

    Attributes:
        key: Claim letter.
        reference: The effect (or margin) to detect (``casceq.reproduce.rules.REFERENCE``).
        sd: Per-item standard deviation used.
        source: Where ``sd`` comes from.
        items: Items (text tasks; mechanistic items for f-h) for 80% power; None when the claim has no test.
        voices: Voices per item (text tasks).
        conditions: Conditions the claim needs (clean, and the lowest SNR for (e)).
        minutes: Wall minutes of the reproduction at that n with this machine's costs.
    """

    key: str
    reference: float | None
    sd: float | None
    source: str
    items: int | None
    voices: int
    conditions: int
    minutes: float | None


def items_needed(key: str, sd: float, reference: float) -> int:
    """Items for 80% power: directional tests at 0.025 one-sided; equivalence by TOST at 0.05 (true effect 0)."""
    from casceq.stats.power import required_n, tost_required_n

    kind = EQUIVALENCE.get(key)
    if kind == "two-sided":
        return tost_required_n(reference, sd)
    return required_n(reference, sd, alpha=0.05 if kind else 0.025)


def from_findings(path: str | Path) -> dict[str, tuple[float, str]]:
    """Per-item SDs measured by a finished reproduction: ``sd = MDE x √items / (z_alpha + z_power)``.

    Uses the largest MDE over a claim's tested tasks (the hardest task decides the n) and the n of that task
    (items for text tasks and the mechanistic suite, as printed in its numbers).
    """
    from casceq.stats.power import mde, tost_mde

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    n_items = _items_of(data.get("plan", {}))
    out = {}
    for claim in data.get("claims", ()):
        key = claim["key"]
        mdes = [t["mde"] for t in claim.get("tasks", ()) if t.get("mde")]
        n = n_items["mech" if key in MECH_CLAIMS else "text"]
        if not mdes or not n:
            continue
        unit = (
            tost_mde(1.0)
            if EQUIVALENCE.get(key) == "two-sided"
            else mde(1.0, 0.05 if key in EQUIVALENCE else 0.025)
        )
        out[key] = (max(mdes) * math.sqrt(n) / unit, f"measured: MDE {max(mdes):.3f} at {n} items ({path})")
    return out


def _items_of(plan: Mapping[str, Any]) -> dict[str, int]:
    sizes = [v for t, v in dict(plan.get("n", {})).items() if t in TEXT_TASKS]
    return {"text": min(sizes) if sizes else 0, "mech": int(plan.get("mech_n", 0))}


def power_table(
    plan: Plan, costs: Costs | None = None, measured: Mapping[str, tuple[float, str]] | None = None
) -> list[PowerRow]:
    """Every claim's items for 80% power and the wall minutes of the plan at that n."""
    from casceq.reproduce.rules import REFERENCE

    rows = []
    for key in "abcdefgh":
        ref = REFERENCE.get(key)
        found = (measured or {}).get(key) or PLANNING_SD.get(key)
        sd, source = found if found else (None, "")
        conds = 2 if key == "e" else 1
        if ref is None or sd is None:
            why = (
                "no planning SD (--from a finished reproduction gives one)"
                if key == "f"
                else "no variance known"
            )
            rows.append(PowerRow(key, ref, None, why, None, len(plan.voices), conds, None))
            continue
        n = items_needed(key, sd, ref)
        if key in MECH_CLAIMS:
            sized = replace(plan, mech_n=max(n, 5), mech=True)
        else:
            sized = replace(plan, n={t: (n if t in TEXT_TASKS else v) for t, v in plan.n.items()})
        minutes = estimate_minutes(sized, costs)["total"]
        rows.append(PowerRow(key, ref, sd, source, n, len(plan.voices), conds, minutes))
    return rows


def format_table(rows: Sequence[PowerRow], plan: Plan, costs: Costs | None = None) -> str:
    """The table printed by ``casceq power`` and ``casceq reproduce --dry-run``."""
    text_n = min((v for t, v in plan.n.items() if t in TEXT_TASKS), default=0)
    lines = [
        f"power (80%) of each claim's reference effect; this plan has {text_n} items x {len(plan.voices)} voices "
        f"per text task, {plan.mech_n} mechanistic items; costs from {(costs or Costs()).source}",
        "| claim | reference | sd/item | items for 80% | voices | conditions | minutes at that n | powered now | source |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        have = plan.mech_n if r.key in MECH_CLAIMS else text_n
        powered = "–" if r.items is None else ("yes" if have >= r.items else "no")
        num = lambda x, f: "–" if x is None else format(x, f)  # noqa: E731
        lines.append(
            f"| ({r.key}) | {num(r.reference, '.2f')} | {num(r.sd, '.3f')} | {num(r.items, 'd')} | {r.voices} | "
            f"{r.conditions} | {num(r.minutes, '.0f')} | {powered} | {r.source} |"
        )
    return "\n".join(lines)


def plan_table(plan: Plan, source: str | Path | None = None) -> str:
    """The power table of ``plan``; variances and costs from the finished reproduction ``source`` when given."""
    costs, measured = Costs(), None
    if source:
        folder = Path(source)
        if (folder / "timings.json").is_file():
            costs = measured_costs(folder)
        if (folder / "findings.json").is_file():
            measured = from_findings(folder / "findings.json")
    return format_table(power_table(plan, costs, measured), plan, costs)
