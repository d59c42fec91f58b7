"""The trained speech LLMs that ship with the package: ``make_speech_llm("ultravox-native:<name>")``.

``SHIPPED`` names them: ``bundled`` (the CTC-interface model: text is its interface by construction),
``continuous`` (an Ultravox projector emitting one continuous vector per 4 encoder frames) and
``acoustic-control`` (the continuous model fine-tuned on the emotion labels of RAVDESS training actors: a subject
known to use the voice) and ``listener`` (the CTC model, unchanged, plus a voice classifier's soft word fitted on
those actors: hears the voice while its words reach the backbone exactly as in the CTC model). Each package-data folder holds the float16 projector (``projector.safetensors``) and its record
(``projector.json``: projector shape, the Ultravox config with the *bundled names* of its encoder and backbone,
their weight fingerprints and the training record). The encoder and backbone are resolved from the weight
packages (``casceq.systems.asr.bundled``, ``casceq.systems.llm.bundled``) and checked against the fingerprints.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.systems.asr.hf_whisper import resolve_hf_whisper
from casceq.systems.llm.bundled import resolve_llm
from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend
from casceq.systems.speech_llm.ultravox_projector import read_checkpoint_record

SHIPPED_NAME = "bundled"
"""The model part of the default spec string: ``"ultravox-native:bundled"``."""
SHIPPED: dict[str, str] = {
    SHIPPED_NAME: "speech_llm",
    "continuous": "speech_llm_continuous",
    "acoustic-control": "speech_llm_acoustic",
    "listener": "speech_llm_listener",
}
"""Shipped model name -> its folder under ``casceq/data``."""


def shipped_folder(name: str = SHIPPED_NAME) -> Path:
    """The package-data folder of the shipped checkpoint ``name`` (a key of ``SHIPPED``)."""
    if name not in SHIPPED:
        raise InputError(f"no shipped speech LLM {name!r}; shipped: {', '.join(SHIPPED)}")
    return Path(str(files("casceq") / "data" / SHIPPED[name]))


def checkpoint_folder(model: str) -> Path:
    """The folder of a native checkpoint named by a shipped name (``SHIPPED``) or by its path."""
    return shipped_folder(model) if model in SHIPPED else Path(model)


def load_shipped(
    folder: str | Path | None = None, *, dtype: str = "float32", device: str = "cpu", **options: Any
) -> UltravoxNativeBackend:
    """Load the shipped (or a ``ship``-ed) checkpoint with its bundled encoder and backbone.

    Raises:
        InputError: No checkpoint in the folder, or the installed weights differ from the fingerprints.
        MissingDependency: A weight package is not installed.
    """
    folder = Path(folder) if folder is not None else shipped_folder()
    record = read_checkpoint_record(folder)
    model = record.get("model") or {}
    if "encoder" not in model or "backbone" not in model:
        raise InputError("the checkpoint names no encoder/backbone", path=str(folder / "projector.json"))
    backbone, _ = resolve_llm(model["backbone"])
    return UltravoxNativeBackend.from_checkpoint(
        folder,
        encoder=resolve_hf_whisper(model["encoder"]),
        backbone=backbone,
        dtype=dtype,
        device=device,
        **options,
    )
