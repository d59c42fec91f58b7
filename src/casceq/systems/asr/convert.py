"""Convert a CTranslate2 Whisper folder into a transformers ``WhisperForConditionalGeneration`` folder.

Why: the offline Whisper weights ship in CTranslate2 format, but hidden states (probes, Whisper as the
control model) and batched generation in PyTorch need transformers. The weights are copied exactly (CTranslate2
stores Whisper in float16, its release precision); the fused attention projections are split back into q/k/v
(CTranslate2 fuses self-attention q|k|v and cross-attention k|v; Whisper's key projections have no bias, so the
key third of the fused bias is zero and dropped).

The output folder holds the model, a ``WhisperProcessor`` (feature extractor + tokenizer with the 1,501
timestamp tokens), a generation config (suppress tokens, begin-suppress tokens, language/task ids for
multilingual models only: ``.en`` models take ``<|startoftranscript|><|notimestamps|>`` and no language or task
token), and ``casceq_conversion.json`` (source SHA-256 and converter version). It is written into a temporary
folder and renamed into place, so a half-written folder is never mistaken for a result.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.paths import cache_dir
from casceq.systems.asr.bundled import BUNDLED, bundled_whisper_dir, sha256_file
from casceq.systems.asr.ct2_mapping import TASKS, count_layers, ct2_state_dict, special_ids
from casceq.systems.asr.ct2_reader import CT2Model, read_ct2

CONVERTER_VERSION = "2"
"""Bump when the output of ``convert_ct2_whisper`` changes for the same input (invalidates caches)."""

MANIFEST = "casceq_conversion.json"
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in steps of 0.02 s


def _vocabulary_file(src: Path) -> Path:
    # The CTranslate2 converter writes vocabulary.json (a JSON list); older folders carry vocabulary.txt.
    for name in ("vocabulary.json", "vocabulary.txt"):
        if (src / name).is_file():
            return src / name
    raise InputError("not a CTranslate2 Whisper folder: no vocabulary.json or vocabulary.txt", path=str(src))


def _source_files(src: Path) -> list[Path]:
    return [src / "model.bin", src / "config.json", src / "tokenizer.json", _vocabulary_file(src)]


def _read_folder(src: Path) -> tuple[CT2Model, dict[str, Any], list[str]]:
    if not src.is_dir():
        raise InputError("CTranslate2 Whisper folder not found", path=str(src))
    missing = [f.name for f in _source_files(src) if not f.is_file()]
    if missing:
        raise InputError(f"not a CTranslate2 Whisper folder: missing {', '.join(missing)}", path=str(src))
    ct2 = read_ct2(src / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise InputError(f"model.bin holds a {ct2.spec}, not a WhisperSpec", path=str(src / "model.bin"))
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    vocab_file = _vocabulary_file(src)
    text = vocab_file.read_text(encoding="utf-8")
    if vocab_file.suffix == ".json":
        vocabulary = list(json.loads(text))
    else:
        vocabulary = text.split("\n")
        if vocabulary and vocabulary[-1] == "":
            vocabulary.pop()
    return ct2, config, vocabulary


def _hf_objects(ct2: CT2Model, ct2_config: dict[str, Any], vocabulary: list[str], tokenizer_json: Path):  # type: ignore[no-untyped-def]
    """Build (model, processor, generation config) in transformers from the CTranslate2 pieces."""
    import torch
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    sd = ct2_state_dict(ct2)
    ids = special_ids(vocabulary)
    d_model, n_mels, _ = sd["model.encoder.conv1.weight"].shape
    vocab_size = sd["model.decoder.embed_tokens.weight"].shape[0]
    multilingual = vocab_size >= 51865  # Whisper's own rule (openai/whisper, transformers)
    common = {"suppress_tokens": ct2_config.get("suppress_ids", []),
              "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", [])}  # fmt: skip
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=count_layers(ct2, "encoder"),
        decoder_layers=count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2.get("encoder/num_heads")),
        decoder_attention_heads=int(ct2.get("decoder/num_heads")),
        encoder_ffn_dim=sd["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=sd["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=sd["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=sd["model.decoder.embed_positions.weight"].shape[0],
        pad_token_id=ids["eot"],
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        tie_word_embeddings=True,
        scale_embedding=False,
    )  # suppress tokens go in the generation config only: transformers 5 warns when both carry them
    dtype = torch.float16 if sd["model.encoder.conv1.weight"].dtype == np.float16 else torch.float32
    model = WhisperForConditionalGeneration(config).eval()
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # proj_out is tied to the token embedding; the encoder's sinusoidal table may be a buffer in some versions.
    if set(missing) - {"proj_out.weight"} or unexpected:
        raise InputError(f"weights do not fit Whisper: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model = model.to(dtype)

    tok_json = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    specials = [
        a["content"] for a in tok_json["added_tokens"] if a.get("special") and a["content"] != "<|endoftext|>"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(tokenizer_json, Path(tmp) / "tokenizer.json")
        tokenizer = WhisperTokenizer.from_pretrained(tmp, additional_special_tokens=specials)
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(vocab_size - len(tokenizer))]
    if len(stamps) != N_TIMESTAMPS or vocabulary[len(tokenizer)] != "<|0.00|>":
        raise InputError(f"tokenizer ({len(tokenizer)} tokens) and model vocabulary ({vocab_size}) disagree")
    tokenizer.add_tokens(
        [AddedToken(s, lstrip=False, rstrip=False, normalized=False, special=False) for s in stamps]
    )
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=n_mels), tokenizer=tokenizer
    )

    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"],
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        max_length=config.max_target_positions,
        no_timestamps_token_id=vocabulary.index("<|notimestamps|>"),
        prev_sot_token_id=vocabulary.index("<|startofprev|>"),
        is_multilingual=multilingual,
        return_timestamps=False,
        max_initial_timestamp_index=50,
        alignment_heads=ct2_config.get("alignment_heads"),
        **common,
    )
    if multilingual:  # .en models must not get these: generate() would then add language/task tokens
        gen.lang_to_id = dict(ids["langs"])  # type: ignore[attr-defined]
        gen.task_to_id = {t: ids[t] for t in TASKS}  # type: ignore[attr-defined]
    model.generation_config = gen
    return model, processor, multilingual


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, moving an old ``out`` aside first.

    Readers that have the old folder's files open keep reading them (POSIX unlink semantics), and no reader ever
    sees a half-written folder.
    """
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / MANIFEST).is_file():  # only a finished conversion by another process excuses a failure
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def convert_ct2_whisper(src: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a CTranslate2 Whisper folder (or bundled name) into a transformers folder.

    Args:
        src: CTranslate2 folder (model.bin, config.json, tokenizer.json, vocabulary.txt) or a bundled name
            (``"tiny.en"``, ``"base"``).
        out: Output folder; created atomically (written beside it, then renamed).
        overwrite: Replace ``out`` if it exists (else an existing ``out`` is an error).

    Returns:
        ``out`` as a Path. Load it with ``WhisperForConditionalGeneration.from_pretrained(out)`` and
        ``WhisperProcessor.from_pretrained(out)``.
    """
    src_dir = bundled_whisper_dir(str(src)) if str(src) in BUNDLED else Path(src)
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("output folder exists (pass overwrite / --force to replace it)", path=str(out))
    ct2, ct2_config, vocabulary = _read_folder(src_dir)
    model, processor, multilingual = _hf_objects(ct2, ct2_config, vocabulary, src_dir / "tokenizer.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        manifest = {
            "converter_version": CONVERTER_VERSION,
            "source": str(src),
            "source_sha256": {f.name: sha256_file(f) for f in _source_files(src_dir)},
            "multilingual": multilingual,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def converted_whisper(name: str) -> Path:
    """Return the transformers folder of a bundled Whisper (or CTranslate2 folder), converting it once.

    The cache (``cache_dir()/whisper-<name>-hf``) is reused only while its manifest names this converter
    version and the source's current SHA-256 (so reinstalled or different weights are converted again).
    """
    if name in BUNDLED:
        src, out = bundled_whisper_dir(name), cache_dir() / f"whisper-{name}-hf"
    else:
        src = Path(name)
        digest = sha256_file(src / "model.bin") if (src / "model.bin").is_file() else "missing"
        out = cache_dir() / f"whisper-{digest[:16]}-hf"
    if _is_current(out, src):
        return out
    try:
        return convert_ct2_whisper(src, out, overwrite=True)
    except OSError:
        if _is_current(out, src):  # another process converted it at the same time
            return out
        raise


def _is_current(out: Path, src: Path) -> bool:
    manifest = out / MANIFEST
    if not manifest.is_file():
        return False
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    return bool(
        meta.get("converter_version") == CONVERTER_VERSION
        and meta.get("source_sha256", {}).get("model.bin") == sha256_file(src / "model.bin")
    )
