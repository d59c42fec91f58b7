"""Build systems from their specs (lazy: no model is loaded until a batch needs it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import Any

from casceq.errors import InputError
from casceq.run.config import ExperimentConfig, SystemSpec
from casceq.systems import asr as asr_registry  # make_* looked up at call time: tests replace them
from casceq.systems import llm as llm_registry
from casceq.systems.compose import ComposedSystem, shot_mismatch, speech_shots
from casceq.systems.llm.bundled import DEFAULT_BACKBONE
from casceq.systems.speech_llm import SpeechLLMSpec, default_backbone, make_speech_llm, registered_backbone
from casceq.systems.speech_llm.shipped import SHIPPED, checkpoint_folder

_SHARED: dict[str, Any] = {}


def _shared(key: str, factory: Any) -> Any:
    """Return one back-end instance per (kind, spec, settings) in a process.

    Cascade-S, the text ceiling and a
    mismatched cascade on the same backbone load it once.
    """
    if key not in _SHARED:
        _SHARED[key] = factory()
    return _SHARED[key]


def clear_shared() -> None:
    """Drop the shared back ends (tests; long-lived processes that switch models)."""
    _SHARED.clear()


def backbone_of(llm_spec: str) -> str:
    """A backbone id from an LLM spec without loading it: the model's name, lower-cased.

    ``"gemma-3-270m"`` -> ``"gemma-3-270m"``; ``"hf:Qwen/Qwen2-7B-Instruct"`` -> ``"qwen2-7b-instruct"``;
    ``"gguf:/x/SmolLM2-135M-Instruct.Q4_1.gguf"`` -> ``"smollm2-135m-instruct"``. Two systems are matched when
    these agree; set ``backbone`` in the config where names differ but the weights are the same.
    """
    s = llm_spec
    for p in llm_registry.PREFIXES:
        if s.startswith(p):
            s = s[len(p) :]
    if s.startswith("openai") or "@" in s:
        s = s.split("@", 1)[0]
    name = PurePath(s.rstrip("/")).name
    for suffix in (".gguf",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    name = name.split(".Q")[0]  # quantisation tags of GGUF files: ".Q4_1", ".Q4_K_M"
    return name.lower()


def system_backbone(spec: SystemSpec) -> str:
    """The backbone id a system carries in a run (what decides matched pairs), without loading anything.

    A declared ``backbone`` is lower-cased (ids are compared lower-cased everywhere, and ``compare`` matches
    them exactly). Otherwise a cascade or text system running a release's registered matched-cascade LLM takes
    the registry's backbone (``hf:Qwen/Qwen-7B-Chat`` -> ``qwen-7b``, Qwen2-Audio's), any other LLM its name
    (``backbone_of``); a speech LLM takes the registry's backbone of its release.
    """
    if spec.backbone:
        return spec.backbone.strip().lower()
    if spec.kind in ("cascade", "text"):
        assert spec.llm is not None
        known = registered_backbone(spec.llm)
        return known.lower() if known else backbone_of(spec.llm)
    assert spec.model is not None
    return _speech_backbone(spec.model)


def run_settings(model: str | None, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """A system's back-end settings in a run with ``seed``: its own settings plus the shots' ranking seed.

    Shots come from the far end of the run's own seeded ranking: never its items. A native Ultravox model
    with a matched prompt draws the shots its checkpoint records, with the same seed as its cascade.
    """
    out = dict(settings)
    if "few_shot" in out or (model or "").startswith("ultravox-native:"):
        out.setdefault("few_shot_seed", seed)
    return out


def build_system(spec: SystemSpec, cfg: ExperimentConfig) -> ComposedSystem:
    """Compose a system of the spec's kind with lazily built back ends."""
    mode: Any = spec.answer_mode or cfg.answer_mode
    settings = run_settings(spec.model, spec.settings, cfg.seed)
    asr = llm = speech = None
    weights = projector_digest(spec.model)
    if spec.kind in ("cascade", "text"):
        assert spec.llm is not None
        llm_spec = spec.llm

        def llm() -> Any:
            key = "llm:" + json.dumps([llm_spec, settings], sort_keys=True, default=str)
            return _shared(key, lambda: llm_registry.make_llm(llm_spec, **settings))

    else:
        assert spec.model is not None
        model_spec = spec.model

        def speech() -> Any:
            opts = dict(settings)
            dtype, device = str(opts.pop("dtype", "auto")), str(opts.pop("device", "auto"))
            parsed = SpeechLLMSpec.parse(
                model_spec, backbone=spec.backbone, dtype=dtype, device=device, options=opts
            )
            # the weights' digest too: a projector retrained in place must not be served from this process's cache
            parts = [model_spec, spec.backbone, settings, weights]
            key = "speech:" + json.dumps(parts, sort_keys=True, default=str)
            return _shared(key, lambda: make_speech_llm(parsed))

    backbone = system_backbone(spec)
    if spec.kind == "speech_llm":
        _check_shots(spec, backbone, cfg)
    if spec.kind == "cascade":
        assert spec.asr is not None
        asr_spec = spec.asr

        def asr() -> Any:
            return _shared("asr:" + asr_spec, lambda: asr_registry.make_asr(asr_spec))

    return ComposedSystem(
        name=spec.name,
        backbone=backbone,
        kind=spec.kind,  # type: ignore[arg-type]
        spec={
            "kind": spec.kind,
            "asr": spec.asr,
            "llm": spec.llm,
            "model": spec.model,
            "settings": settings,
            **({"weights": weights} if weights else {}),
        },
        mode=mode,
        asr=asr,
        llm=llm,
        speech=speech,
    )


def _check_shots(spec: SystemSpec, backbone: str, cfg: ExperimentConfig) -> None:
    """Refuse a speech LLM whose shots differ from a cascade's or text system's on the same backbone."""
    assert spec.model is not None
    mine = (spec.name, speech_shots(spec.model, spec.settings))
    tasks = [t.name for t in cfg.tasks]
    for other in cfg.systems:
        if other.kind not in ("cascade", "text") or other.llm is None:
            continue
        if system_backbone(other) != backbone.lower():
            continue
        problem = shot_mismatch(mine, (other.name, other.settings.get("few_shot", 0)), tasks)
        if problem:
            raise InputError(problem)


def native_folder(model_spec: str | None) -> Any:
    """The checkpoint folder of a native Ultravox model spec (a ``Path``), or None for other systems."""
    if not model_spec or not model_spec.startswith("ultravox-native:"):
        return None
    return checkpoint_folder(model_spec.partition(":")[2])


def projector_digest(model_spec: str | None) -> str | None:
    """SHA-256 (16 hex) of a native Ultravox model's trained projector, or None for other systems.

    Its spec string (``ultravox-native:bundled`` or a folder) stays the same when the weights are retrained or
    re-shipped, so the cache key of its predictions must include the weights themselves.
    """
    folder = native_folder(model_spec)
    if folder is None:
        return None
    weights = folder / "projector.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else None


def _speech_backbone(model_spec: str) -> str:
    """The backbone of a speech LLM, lower-cased; a config error when it is not known.

    A released model's from the registry (``KNOWN_BACKBONES``); a native checkpoint's from its
    ``projector.json`` (``backbone_name``, as ``make_speech_llm`` reads it).
    """
    family, _, model = model_spec.partition(":")
    known = default_backbone(model)
    if known is None and family == "ultravox-native":
        known = recorded_backbone(model_spec)
    if known is None and family == "ultravox-native" and model in SHIPPED:
        known = DEFAULT_BACKBONE
    if known is None:
        raise InputError(
            f'speech LLM {model_spec!r}: its LLM backbone is not known; set backbone = "..." in its [[systems]] '
            "table (the id its matched cascade's LLM has)"
        )
    return backbone_of(known)


def recorded_backbone(model_spec: str) -> str | None:
    """``backbone_name`` from a native checkpoint's ``projector.json`` (None when absent or unreadable)."""
    folder = native_folder(model_spec)
    try:
        record = json.loads((folder / "projector.json").read_text(encoding="utf-8"))
        name = record["model"]["backbone_name"]
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
    ):  # no checkpoint there yet: the config error says what to do
        return None
    return name if isinstance(name, str) and name.strip() else None
