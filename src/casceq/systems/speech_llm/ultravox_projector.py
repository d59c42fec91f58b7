"""The Ultravox projector (frame stacking + normalised MLP) and its fingerprinted checkpoint.

The checkpoint carries the projector config and a fingerprint of the encoder and backbone weights it was
trained against.

The projector follows fixie-ai/ultravox ``UltravoxProjector``: stack ``k`` consecutive encoder frames
([T, D] -> [ceil(T/k), k·D], zero-padding the last group), pre-norm, ``Linear(k·D -> H)``, SwiGLU (halving H) or
GELU, ``Linear(-> LLM width)``, post-norm. Norms are RMSNorm (Ultravox's choice) or LayerNorm.

Two output heads:

- ``"embed"`` (Ultravox): the last Linear maps to the LLM width and the post-norm gives the audio embeddings,
  one per stacked group.
- ``"ctc"`` (LegoSLM-style, Ma et al. 2025, "LegoSLM: connecting LLM with speech encoder using CTC
  posteriors"): the last Linear gives CTC logits over a subset of the backbone's vocabulary (index 0 = blank);
  the audio embeddings are the posterior-weighted sums of those tokens' input embeddings, one per CTC segment
  (blank groups dropped, consecutive groups with the same best token merged by summing their posteriors).
  The soft sums keep the posterior's uncertainty; the segmentation follows greedy CTC decoding. The token ids
  are a buffer of the checkpoint; the embedding table is attached from the backbone (``attach_table``).

A ``"ctc"`` head may also carry a *voice classifier* (``voice_classes`` > 0): a linear classifier of the mean and
standard deviation of each 30-s chunk's encoder frames (standardised), whose posterior over ``voice_classes``
words weights those words' input embeddings into one more audio embedding after the chunk's tokens (the
classifier's soft word; ``voice_temperature`` divides its logits). The token path is unchanged, so such a
model hears the voice and reads the words exactly as the CTC model does: the listener built on the CTC model
(``casceq.train.voice``). The words' ids are a buffer; their embeddings are attached from the backbone
(``attach_voice_table``).

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
TRAINING_TEXTS_FILE = "training_texts.txt"
"""Keys of the projector's training texts beside its weights (``casceq.run.leakage`` checks runs against them)."""
TRAINING_IDS_FILE = "training_ids.txt"
"""``task:example id`` of natural-speech clips a projector was trained on (their words say nothing: RAVDESS)."""
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
        head: ``"embed"`` (Ultravox) or ``"ctc"`` (posterior-weighted token embeddings, see the module doc).
        vocab_size: Number of backbone tokens the ``"ctc"`` head can emit (the blank comes on top).
        voice_classes: Words of a ``"ctc"`` head's voice classifier (0: none; see the module doc).
        voice_temperature: Divides the voice classifier's logits before the softmax.
    """

    encoder_dim: int
    llm_dim: int
    stack_factor: int = 8
    hidden_dim: int = 2048
    activation: Literal["swiglu", "gelu"] = "swiglu"
    norm: Literal["rms", "layer"] = "rms"
    head: Literal["embed", "ctc"] = "embed"
    vocab_size: int = 0
    voice_classes: int = 0
    voice_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.activation not in ("swiglu", "gelu"):
            raise InputError(f"projector activation must be 'swiglu' or 'gelu', not {self.activation!r}")
        if self.norm not in ("rms", "layer"):
            raise InputError(f"projector norm must be 'rms' or 'layer', not {self.norm!r}")
        if self.activation == "swiglu" and self.hidden_dim % 2:
            raise InputError("a SwiGLU projector needs an even hidden_dim")
        if self.head not in ("embed", "ctc"):
            raise InputError(f"projector head must be 'embed' or 'ctc', not {self.head!r}")
        if self.head == "ctc" and self.vocab_size < 1:
            raise InputError("a 'ctc' projector head needs vocab_size >= 1")
        if self.voice_classes < 0 or (self.voice_classes and self.head != "ctc"):
            raise InputError("voice_classes must be >= 0, and only a 'ctc' head carries a voice classifier")
        if not self.voice_temperature > 0:
            raise InputError(f"voice_temperature must be > 0, not {self.voice_temperature!r}")


def voice_stats(frames: Any) -> Any:
    """The voice classifier's input: mean and standard deviation over time of one chunk's frames [T, D] -> [2D]."""
    import torch

    f = frames.float()
    return torch.cat([f.mean(0), f.std(0, correction=0)])


def build_projector(cfg: ProjectorConfig) -> Any:
    """Build a fresh ``torch.nn.Module`` mapping encoder frames [T, D] to audio embeddings [ceil(T/k), llm_dim]."""
    import torch
    from torch import nn

    def norm(dim: int) -> nn.Module:
        return nn.RMSNorm(dim, eps=1e-6) if cfg.norm == "rms" else nn.LayerNorm(dim)

    class UltravoxProjector(nn.Module):
        """Stack k frames, pre-norm, Linear, SwiGLU/GELU, Linear, post-norm (or the CTC head)."""

        def __init__(self) -> None:
            super().__init__()
            k_dim = cfg.encoder_dim * cfg.stack_factor
            act_out = cfg.hidden_dim // 2 if cfg.activation == "swiglu" else cfg.hidden_dim
            self.ln_pre = norm(k_dim)
            self.linear_1 = nn.Linear(k_dim, cfg.hidden_dim, bias=False)
            if cfg.head == "ctc":
                self.linear_2 = nn.Linear(act_out, cfg.vocab_size + 1, bias=True)
                self.register_buffer("vocab_ids", torch.zeros(cfg.vocab_size + 1, dtype=torch.long))
                self.register_buffer("table", torch.zeros(0), persistent=False)
            else:
                self.linear_2 = nn.Linear(act_out, cfg.llm_dim, bias=False)
                self.ln_post = norm(cfg.llm_dim)
            if cfg.voice_classes:
                stats = 2 * cfg.encoder_dim
                self.voice = nn.Linear(stats, cfg.voice_classes)
                self.register_buffer("voice_ids", torch.zeros(cfg.voice_classes, dtype=torch.long))
                self.register_buffer("voice_mean", torch.zeros(stats))
                self.register_buffer("voice_scale", torch.ones(stats))
                self.register_buffer("voice_table", torch.zeros(0), persistent=False)

        def hidden(self, frames: torch.Tensor) -> torch.Tensor:
            """Frames [T, D] (or [B, T, D]) -> the last Linear's output [ceil(T/k), .]."""
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
            return self.linear_2(x)

        def attach_table(self, table: torch.Tensor) -> None:
            """Set the input embeddings [vocab_size + 1, llm_dim] of ``vocab_ids`` (as the backbone reads them)."""
            self.table = table.detach()

        def attach_voice_table(self, table: torch.Tensor) -> None:
            """Set the input embeddings [voice_classes, llm_dim] of ``voice_ids``."""
            self.voice_table = table.detach()

        def voice_logits(self, frames: torch.Tensor) -> torch.Tensor:
            """The voice classifier's logits [voice_classes] of one chunk's frames [T, D] (float32)."""
            z = (voice_stats(frames) - self.voice_mean.float()) / self.voice_scale.float()
            return nn.functional.linear(z, self.voice.weight.float(), self.voice.bias.float())

        def voice_embedding(self, frames: torch.Tensor) -> torch.Tensor:
            """The classifier's soft word [1, llm_dim]: its posterior over the words times their embeddings."""
            probs = (self.voice_logits(frames) / cfg.voice_temperature).softmax(-1)
            return (probs @ self.voice_table.float())[None]

        def segments(self, logits: torch.Tensor) -> list[tuple[int, int]]:
            """Greedy CTC segments of one clip's logits [n, K + 1]: [start, end) group ranges of one non-blank token."""
            best = logits.argmax(-1).tolist()
            out: list[tuple[int, int]] = []
            for i, b in enumerate(best):
                if b == 0:
                    continue
                if out and out[-1][1] == i and best[i - 1] == b:
                    out[-1] = (out[-1][0], i + 1)
                else:
                    out.append((i, i + 1))
            return out

        def compress(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
            """CTC head: audio embeddings [S, llm_dim] of one clip's frames [T, D] and their group ranges.

            With a voice classifier, its soft word comes last, spanning every group of the chunk.
            """
            embeds, segs = self.read(frames)
            if not cfg.voice_classes or not frames.shape[0]:
                return embeds, segs
            span = (0, -(-frames.shape[0] // cfg.stack_factor))
            return torch.cat([embeds, self.voice_embedding(frames).to(embeds.dtype)]), [*segs, span]

        def read(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
            """The CTC tokens' embeddings [S, llm_dim] of one chunk's frames [T, D] and their group ranges."""
            logits = self.hidden(frames)
            segs = self.segments(logits)
            if not segs:  # nothing but blank: one position reading the blank token (the single space)
                best = int(logits[:, 1:].max(-1).values.argmax()) if logits.shape[0] else 0
                return self.table[:1].to(logits.dtype), [(best, best + 1)]
            probs = logits.softmax(-1)[:, 1:]
            pooled = torch.stack([probs[a:b].sum(0) for a, b in segs])
            pooled = pooled / pooled.sum(-1, keepdim=True)
            return pooled @ self.table[1:].to(pooled.dtype), segs

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            """Frames [T, D] (or [B, T, D]; ``"embed"`` only) -> audio embeddings [n, llm_dim] (or [B, ., llm_dim])."""
            if cfg.head == "ctc":
                if frames.dim() != 2:
                    raise InputError("the 'ctc' projector head takes one clip's frames [T, D] at a time")
                return self.compress(frames)[0]
            return self.ln_post(self.hidden(frames))

    module = UltravoxProjector()
    module.config = cfg  # type: ignore[assignment]
    return module


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
