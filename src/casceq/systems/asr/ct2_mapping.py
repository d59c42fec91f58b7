"""Mapping of CTranslate2 Whisper variables onto transformers ``WhisperForConditionalGeneration`` names.

CTranslate2 fuses self-attention q|k|v into ``linear_0`` and cross-attention k|v into ``linear_1``; Whisper's key
projections have no bias, so the key third of a fused bias is zero and dropped. CTranslate2 also omits all-zero
biases when it saves, so a missing bias is read as zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.systems.asr.ct2_reader import CT2Model

TASKS = ("translate", "transcribe")


def _linear(ct2: CT2Model, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Weight [out, in] and bias [out] of a CTranslate2 linear layer, dequantising int8 if needed.

    CTranslate2 drops all-zero biases when it saves a model, so a missing bias is a zero bias.
    """
    w = ct2.get(f"{prefix}/weight")
    scale_name = f"{prefix}/weight_scale"
    if scale_name in ct2.variables:
        # CTranslate2 int8: w_int8 = round(w * scale) with one scale per output row.
        w = w.astype(np.float32) / ct2.variables[scale_name].astype(np.float32).reshape(-1, 1)
    b = ct2.variables.get(f"{prefix}/bias")
    return w, (np.zeros(w.shape[0], dtype=w.dtype) if b is None else b)


def _attention(ct2: CT2Model, src: str, dst: str, fused_qkv: bool, sd: dict[str, np.ndarray]) -> None:
    """Split one CTranslate2 attention block into transformers' q/k/v/out projections."""
    if fused_qkv:  # self-attention: linear_0 = [q; k; v], linear_1 = out
        w, b = _linear(ct2, f"{src}/linear_0")
        d = w.shape[0] // 3
        q, k, v = w[:d], w[d : 2 * d], w[2 * d :]
        qb, vb = b[:d], b[2 * d :]
        out_w, out_b = _linear(ct2, f"{src}/linear_1")
    else:  # cross-attention: linear_0 = q, linear_1 = [k; v], linear_2 = out
        q, qb = _linear(ct2, f"{src}/linear_0")
        kv, kvb = _linear(ct2, f"{src}/linear_1")
        d = q.shape[0]
        k, v, vb = kv[:d], kv[d:], kvb[d:]
        out_w, out_b = _linear(ct2, f"{src}/linear_2")
    sd[f"{dst}.q_proj.weight"], sd[f"{dst}.q_proj.bias"] = q, qb
    sd[f"{dst}.k_proj.weight"] = k
    sd[f"{dst}.v_proj.weight"], sd[f"{dst}.v_proj.bias"] = v, vb
    sd[f"{dst}.out_proj.weight"], sd[f"{dst}.out_proj.bias"] = out_w, out_b


def _norm(ct2: CT2Model, src: str, dst: str, sd: dict[str, np.ndarray]) -> None:
    sd[f"{dst}.weight"], sd[f"{dst}.bias"] = ct2.get(f"{src}/gamma"), ct2.get(f"{src}/beta")


def _ffn(ct2: CT2Model, src: str, dst: str, sd: dict[str, np.ndarray]) -> None:
    for i, name in ((0, "fc1"), (1, "fc2")):
        sd[f"{dst}.{name}.weight"], sd[f"{dst}.{name}.bias"] = _linear(ct2, f"{src}/linear_{i}")
    _norm(ct2, f"{src}/layer_norm", f"{dst}.final_layer_norm", sd)


def count_layers(ct2: CT2Model, side: str) -> int:
    """Number of ``layer_<i>`` blocks under ``side`` (``"encoder"`` or ``"decoder"``)."""
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in ct2.variables:
        n += 1
    return n


def ct2_state_dict(ct2: CT2Model) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables onto ``WhisperForConditionalGeneration`` parameter names.

    Returns:
        Parameter name to array (the file's dtype). ``proj_out.weight`` is left out: it is tied to
        ``model.decoder.embed_tokens.weight`` (CTranslate2 stores it as an alias too).
    """
    sd: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        sd[f"model.encoder.{conv}.weight"] = ct2.get(f"encoder/{conv}/weight")  # [d, in, 3]
        sd[f"model.encoder.{conv}.bias"] = ct2.get(f"encoder/{conv}/bias")
    sd["model.encoder.embed_positions.weight"] = ct2.get("encoder/position_encodings/encodings")
    for i in range(count_layers(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _attention(ct2, f"{src}/self_attention", f"{dst}.self_attn", True, sd)
        _norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", sd)
        _ffn(ct2, f"{src}/ffn", dst, sd)
    _norm(ct2, "encoder/layer_norm", "model.encoder.layer_norm", sd)
    sd["model.decoder.embed_tokens.weight"] = ct2.get("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = ct2.get("decoder/position_encodings/encodings")
    for i in range(count_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _attention(ct2, f"{src}/self_attention", f"{dst}.self_attn", True, sd)
        _norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", sd)
        _attention(ct2, f"{src}/attention", f"{dst}.encoder_attn", False, sd)
        _norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", sd)
        _ffn(ct2, f"{src}/ffn", dst, sd)
    _norm(ct2, "decoder/layer_norm", "model.decoder.layer_norm", sd)
    return sd


def special_ids(vocabulary: list[str]) -> dict[str, Any]:
    """Ids of Whisper's special tokens from a CTranslate2 ``vocabulary.txt`` (one token per line, id = line)."""
    index = {tok: i for i, tok in enumerate(vocabulary)}
    need = (
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|notimestamps|>",
        "<|startofprev|>",
        *(f"<|{t}|>" for t in TASKS),
    )
    missing = [t for t in need if t not in index]
    if missing:
        raise InputError(f"vocabulary lacks Whisper special tokens {missing}")
    sot, translate = index["<|startoftranscript|>"], index["<|translate|>"]
    # Language tokens sit between <|startoftranscript|> and <|translate|> (".en" vocabularies have them too).
    langs = {vocabulary[i]: i for i in range(sot + 1, translate)}
    return {
        "eot": index["<|endoftext|>"],
        "sot": sot,
        "langs": langs,
        **{t: index[f"<|{t}|>"] for t in TASKS},
    }
