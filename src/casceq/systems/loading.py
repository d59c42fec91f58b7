"""Loading weights with a check: a checkpoint that lacks parameters is refused, never run half-random.

Shared by the text LLM and speech LLM back ends; ``dtype``/``device`` ``"auto"`` are resolved here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from casceq.errors import InputError

AUTO = "auto"
"""``dtype``/``device`` value resolved at load time: bfloat16 on a GPU, float32 on CPU; CUDA when present."""


@dataclass(frozen=True)
class LoadReport:
    """What ``from_pretrained`` did with a checkpoint's weights (its ``output_loading_info``).

    Attributes:
        path: Hub id or folder loaded.
        missing: Parameters the checkpoint lacks (transformers initialises them at random).
        mismatched: Parameters whose shape differs in the checkpoint (also initialised at random).
        unexpected: Checkpoint tensors the model does not use (harmless when loading part of a model, e.g.
            the Qwen2.5-Omni thinker out of the full release).
        dtype: The torch dtype the weights were loaded in.
        device: The device they were moved to.
    """

    path: str
    missing: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    dtype: str = ""
    device: str = ""

    @property
    def ok(self) -> bool:
        """True when every parameter came from the checkpoint."""
        return not self.missing and not self.mismatched


class WeightsError(InputError):
    """A checkpoint lacks weights the model needs: they would be randomly initialised."""


def resolve_dtype_device(dtype: str = AUTO, device: str = AUTO) -> tuple[str, str]:
    """Resolve ``"auto"``: CUDA when available, else CPU; bfloat16 on a GPU, float32 on CPU."""
    import torch

    if device == AUTO:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == AUTO:
        dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'")
    return dtype, device


def load_reports(backend: Any) -> list[LoadReport]:
    """The load reports of a loaded back end's parts (itself, ``model``, ``encoder``), each once, in that order."""
    parts = [backend, getattr(backend, "model", None), getattr(backend, "encoder", None)]
    found = [getattr(p, "load_report", None) for p in parts if p is not None]
    out: list[LoadReport] = []
    for report in found:
        if isinstance(report, LoadReport) and report not in out:
            out.append(report)
    return out


def _names(keys: Any) -> tuple[str, ...]:
    # mismatched_keys holds (name, checkpoint shape, model shape) tuples; the others hold names
    return tuple(sorted(str(k[0] if isinstance(k, tuple) else k) for k in keys or ()))


def checked_load(
    loader: Callable[..., Any], path: str, *, dtype: str = AUTO, device: str = AUTO, **kwargs: Any
) -> tuple[Any, LoadReport]:
    """Load weights with ``loader(path, dtype=..., output_loading_info=True, **kwargs)`` and refuse gaps.

    transformers only logs a LOAD REPORT when a checkpoint lacks parameters (e.g. Phi-4-multimodal's hub
    ``main``, laid out for its remote code with ``*.base_layer.weight`` names): the model would run with
    random ``qkv_proj``/``gate_up_proj`` and give wrong answers without an error. This raises instead.

    Raises:
        WeightsError: Missing or shape-mismatched parameters, named (the first 8) with their count.
    """
    import torch

    dtype, device = resolve_dtype_device(dtype, device)
    model, info = loader(path, dtype=getattr(torch, dtype), output_loading_info=True, **kwargs)
    report = LoadReport(
        path=str(path),
        missing=_names(info.get("missing_keys")),
        mismatched=_names(info.get("mismatched_keys")),
        unexpected=_names(info.get("unexpected_keys")),
        dtype=dtype,
        device=device,
    )
    if not report.ok:
        bad = [*report.missing, *report.mismatched]
        raise WeightsError(
            f"{path}: {len(bad)} weights are missing from the checkpoint or have another shape, so they would be "
            f"randomly initialised: {', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}. Is this the "
            "transformers-native revision of the checkpoint (Phi-4-multimodal: revision='refs/pr/70')?"
        )
    model = model.to(device)
    model.load_report = report  # read by ``casceq doctor``
    return model, report
