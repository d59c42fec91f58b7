"""The Ultravox projector (frame stacking + normalised MLP) and its fingerprinted checkpoint.

The checkpoint carries the projector config and a fingerprint of the encoder and backbone weights it was
trained against.

The projector follows fixie-ai/ultravox ``UltravoxProjector``: stack ``k`` consecutive encoder frames
([T, D] -> [ceil(T/k), k·D], zero-padding the last group), pre-norm, ``Linear(k·D -> H)``, SwiGLU (halving H) or
GELU, ``Linear(-> LLM width)``, post-norm. Norms are RMSNorm (Ultravox's choice) or LayerNorm.

A projector only makes sense with the exact encoder and backbone it was trained against, so the checkpoint
stores their fingerprints (as tuned-lens stores its ``unembed_hash``) and ``load_projector`` refuses others.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from casceq.errors import InputError

CHECKPOINT_FORMAT = "casceq-ultravox-projector"
CONFIG_FILE = "projector.json"
WEIGHTS_FILE = "projector.safetensors"
FINGERPRINT_SAMPLES = 4096
"""Values sampled (evenly strided) from each tensor for the fingerprint: enough to see any fine-tune."""


@dataclass(frozen=True)
class ProjectorConfig:
    """Shape of an Ultravox projector.

    Attributes:
        encoder_dim: Width D of the audio encoder's output frames.
        llm_dim: Embedding width of the language model.
        stack_factor: k, encoder frames stacked into one audio embedding (8 in Ultravox: 50 Hz -> 6.25 Hz).
        hidden_dim: Width H of the MLP's hidden layer (before SwiGLU halves it).
        activation: ``"swiglu"`` (Ultravox) or ``"gelu"``.
        norm: ``"rms"`` (Ultravox) or ``"layer"``.
    """

    encoder_dim: int
    llm_dim: int
    stack_factor: int = 8
    hidden_dim: int = 2048
    activation: Literal["swiglu", "gelu"] = "swiglu"
    norm: Literal["rms", "layer"] = "rms"

    def __post_init__(self) -> None:
        if self.activation not in ("swiglu", "gelu"):
            raise InputError(f"projector activation must be 'swiglu' or 'gelu', not {self.activation!r}")
        if self.norm not in ("rms", "layer"):
            raise InputError(f"projector norm must be 'rms' or 'layer', not {self.norm!r}")
        if self.activation == "swiglu" and self.hidden_dim % 2:
            raise InputError("a SwiGLU projector needs an even hidden_dim")


def build_projector(cfg: ProjectorConfig) -> Any:
    """Build a fresh ``torch.nn.Module`` mapping encoder frames [T, D] to audio embeddings [ceil(T/k), llm_dim]."""
    import torch
    from torch import nn

    def norm(dim: int) -> nn.Module:
        return nn.RMSNorm(dim, eps=1e-6) if cfg.norm == "rms" else nn.LayerNorm(dim)

    class UltravoxProjector(nn.Module):
        """Stack k frames, pre-norm, Linear, SwiGLU/GELU, Linear, post-norm."""

        def __init__(self) -> None:
            super().__init__()
            k_dim = cfg.encoder_dim * cfg.stack_factor
            act_out = cfg.hidden_dim // 2 if cfg.activation == "swiglu" else cfg.hidden_dim
            self.ln_pre = norm(k_dim)
            self.linear_1 = nn.Linear(k_dim, cfg.hidden_dim, bias=False)
            self.linear_2 = nn.Linear(act_out, cfg.llm_dim, bias=False)
            self.ln_post = norm(cfg.llm_dim)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            """Frames [T, D] (or [B, T, D]) -> [ceil(T/k), llm_dim] (or [B, ., llm_dim])."""
            k = cfg.stack_factor
            pad = (-frames.shape[-2]) % k
            x = nn.functional.pad(frames, (0, 0, 0, pad))
            x = x.reshape(*x.shape[:-2], x.shape[-2] // k, k * x.shape[-1])
            x = self.linear_1(self.ln_pre(x))
            if cfg.activation == "swiglu":
                value, gate = x.chunk(2, dim=-1)
                x = nn.functional.silu(gate) * value
            else:
                x = nn.functional.gelu(x)
            return self.ln_post(self.linear_2(x))

    return UltravoxProjector()


def weights_fingerprint(module: Any) -> str:
    """SHA-256 over parameter names, shapes and strided samples of values rounded to bfloat16.

    Rounding to bfloat16 makes a float32 and a bfloat16 copy of the same weights agree, while any training
    step changes the sampled values. Buffers (rotary caches, position ids) are left out.
    """
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
        flat = param.detach().reshape(-1)
        stride = max(1, flat.numel() // FINGERPRINT_SAMPLES)
        sample = flat[::stride][:FINGERPRINT_SAMPLES].to("cpu", torch.bfloat16).contiguous()
        digest.update(f"{name}:{tuple(param.shape)};".encode())
        digest.update(sample.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def save_projector(
    folder: str | Path,
    projector: Any,
    cfg: ProjectorConfig,
    *,
    encoder_hash: str,
    backbone_hash: str,
    **meta: Any,
) -> Path:
    """Write ``projector.safetensors`` and ``projector.json`` (config, fingerprints, ``meta``) into ``folder``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in projector.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    record = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "projector": asdict(cfg),
        "encoder_hash": encoder_hash,
        "backbone_hash": backbone_hash,
        **meta,
    }
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return out


def read_checkpoint_record(folder: str | Path) -> dict[str, Any]:
    """Read the JSON record of a projector checkpoint, validated (format, required keys)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InputError("not a projector checkpoint (no projector.json)", path=str(folder))
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from exc
    if record.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"format is {record.get('format')!r}, expected {CHECKPOINT_FORMAT!r}", path=str(path)
        )
    missing = {"projector", "encoder_hash", "backbone_hash"} - set(record)
    if missing:
        raise InputError(f"missing keys {sorted(missing)}", path=str(path))
    return record


def load_projector(
    folder: str | Path, *, encoder_hash: str, backbone_hash: str
) -> tuple[Any, ProjectorConfig]:
    """Load a projector saved by ``save_projector``, refusing encoder/backbone weights it was not trained on.

    Raises:
        InputError: The checkpoint is malformed, or either fingerprint differs from the one recorded.
    """
    from safetensors.torch import load_file

    record = read_checkpoint_record(folder)
    where = str(Path(folder) / CONFIG_FILE)
    for part, actual in (("encoder", encoder_hash), ("backbone", backbone_hash)):
        if record[f"{part}_hash"] != actual:
            raise InputError(
                f"this projector was trained against a different {part} (weights fingerprint "
                f"{record[f'{part}_hash'][:12]}…, loaded {actual[:12]}…); load the {part} it was trained with",
                path=where,
            )
    cfg = ProjectorConfig(**record["projector"])
    projector = build_projector(cfg)
    projector.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
    return projector, cfg
