"""The pairing a run starts with: each speech LLM, its registry backbone, and the run's matched/mismatched systems.

Written to the run folder as ``pairing.json`` at every start (it follows from the config and the registry, and
loads no model), printed by ``casceq run`` and shown in ``report.md``. Its warnings name what contradicts the
registry, so a pair that is matched only by a typo, or not at all, is visible before any result is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casceq.run.build import recorded_backbone, system_backbone
from casceq.run.config import ExperimentConfig, SystemSpec
from casceq.systems.speech_llm.registry import backbone_info, backbone_mismatch, registered_backbone

PAIRING_JSON = "pairing.json"
_SOURCE = {"declared": "declared", "registry": "from the registry", "checkpoint": "from the checkpoint"}


@dataclass(frozen=True)
class RegistryEntry:
    """What the backbone registry says about a speech LLM release (``speech_llm.BACKBONES``).

    Attributes:
        release: The release's registry key (its hub folder name, lower-cased).
        backbone: The registry's backbone name.
        matched_llm: The registered matched-cascade LLM spec (None: the backbone has no open weights).
        llm_settings: The ``make_llm`` settings that LLM needs.
        note: What "matched" means for this release.
    """

    release: str
    backbone: str
    matched_llm: str | None
    llm_settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class SpeechPairing:
    """One speech LLM of a run and the systems of the run it is paired with.

    Attributes:
        system: The speech LLM's system name.
        model: Its model spec.
        backbone: The backbone id it carries in the run (what ``compare`` matches on).
        source: Where that id comes from: ``"declared"``, ``"registry"`` or ``"checkpoint"`` (native Ultravox).
        registry: The registry entry of its release, or None (not a registered release).
        matched: Cascade and text systems of the run on the same backbone.
        mismatched: Cascade and text systems of the run on another backbone.
    """

    system: str
    model: str
    backbone: str
    source: str
    registry: RegistryEntry | None
    matched: tuple[str, ...]
    mismatched: tuple[str, ...]


@dataclass(frozen=True)
class Pairing:
    """The run's pairing: one entry per speech LLM, and the warnings about it."""

    speech_llms: tuple[SpeechPairing, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``pairing.json``)."""
        return asdict(self)

    def lines(self) -> list[str]:
        """One line per speech LLM, then one per warning (what ``casceq run`` prints)."""
        out = []
        for p in self.speech_llms:
            reg = p.registry
            where = (
                f"registry backbone {reg.backbone}, matched-cascade LLM "
                f"{reg.matched_llm or 'none (' + reg.note + ')'}"
                if reg
                else "not a registered release"
            )
            out.append(
                f"pairing: {p.system} ({p.model}) -> backbone {p.backbone!r} [{_SOURCE[p.source]}; {where}]; "
                f"matched: {', '.join(p.matched) or 'none'}; mismatched: {', '.join(p.mismatched) or 'none'}"
            )
        return out + [f"warning: {w}" for w in self.warnings]


def _registry_entry(model_spec: str) -> RegistryEntry | None:
    from pathlib import PurePosixPath

    _, _, model = model_spec.partition(":")
    info = backbone_info(model)
    if info is None:
        return None
    release = PurePosixPath(model.rstrip("/")).name.lower()
    return RegistryEntry(release, info.name, info.llm, dict(info.settings), info.note)


def _speech_pairing(
    spec: SystemSpec, others: Sequence[tuple[SystemSpec, str]], warnings: list[str]
) -> SpeechPairing:
    """Pair one speech LLM with the run's cascade/text systems; add what contradicts the registry to warnings."""
    assert spec.model is not None
    backbone = system_backbone(spec)
    registry = _registry_entry(spec.model)
    source = "declared" if spec.backbone else ("registry" if registry else "checkpoint")
    problem = backbone_mismatch(spec.model.partition(":")[2], spec.backbone)
    if problem:
        warnings.append(f"{spec.name}: {problem}")
    recorded = recorded_backbone(spec.model) if spec.model.startswith("ultravox-native:") else None
    if spec.backbone and recorded and recorded.lower() != backbone:
        warnings.append(
            f"{spec.name}: declared backbone {spec.backbone!r} differs from {recorded!r}, the one its checkpoint "
            "was trained on (projector.json); the pair is matched on the declared id"
        )
    matched = tuple(o.name for o, b in others if b == backbone)
    mismatched = tuple(o.name for o, b in others if b != backbone)
    if not matched:
        warnings.append(
            f"{spec.name}: no cascade or text system of the run has its backbone {backbone!r}: it has no matched pair"
        )
    for other, b in others:  # the registered LLM of this release, declared onto another backbone
        assert other.llm is not None
        if registry and b != backbone and registered_backbone(other.llm) == registry.backbone:
            warnings.append(
                f"{other.name} runs {other.llm}, the registry's matched-cascade LLM of {spec.name}, but carries "
                f"backbone {b!r}, not {backbone!r}: it counts as mismatched"
            )
    return SpeechPairing(spec.name, spec.model, backbone, source, registry, matched, mismatched)


def run_pairing(cfg: ExperimentConfig) -> Pairing:
    """The pairing of every speech LLM in ``cfg`` with its cascade and text systems (nothing is loaded)."""
    others = [(s, system_backbone(s)) for s in cfg.systems if s.kind in ("cascade", "text")]
    warnings: list[str] = []
    speech = tuple(_speech_pairing(s, others, warnings) for s in cfg.systems if s.kind == "speech_llm")
    return Pairing(speech, tuple(warnings))


def write_pairing(out: Path, pairing: Pairing) -> None:
    """Write ``pairing.json`` into the run folder (replaced at every start: it follows from config + registry)."""
    path = out / PAIRING_JSON
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pairing.to_dict(), indent=2), encoding="utf-8")
    tmp.replace(path)


def pairing_markdown(pairing: Pairing | None) -> list[str]:
    """The report's ``Pairing`` section (no lines for a run without speech LLMs)."""
    if pairing is None or not pairing.speech_llms:  # every warning is about a speech LLM
        return []
    lines = [
        "## Pairing",
        "",
        "| speech LLM | backbone | from | registry backbone | registered cascade LLM | matched | mismatched |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairing.speech_llms:
        reg = p.registry
        lines.append(
            f"| {p.system} | {p.backbone} | {p.source} | {reg.backbone if reg else '–'} | "
            f"{(reg.matched_llm or 'none') if reg else '–'} | {', '.join(p.matched) or '–'} | "
            f"{', '.join(p.mismatched) or '–'} |"
        )
    return [*lines, "", *[f"- warning: {w}" for w in pairing.warnings], ""]
