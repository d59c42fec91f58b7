"""Tiny random-weight instances of the real model classes, saved with ``save_pretrained``.

Each builder makes the real transformers class from a small config (width 32-64, 1-2 layers), a real tokenizer
class built in memory (byte-level BPE over the 256 byte symbols, no merges, plus the model's special tokens),
saves model, tokenizer and feature extractor into ``folder`` and returns it, so tests load them back through
the same ``from_pretrained`` path a hub id takes. Weights are seeded: the same call gives the same model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SEED = 1234
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]


def byte_tokenizer(specials: list[str], cls_name: str = "Qwen2Tokenizer", **kwargs: Any) -> Any:
    """A byte-level BPE tokenizer of class ``transformers.<cls_name>``: 256 byte tokens, then ``specials``."""
    import transformers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    tok = getattr(transformers, cls_name)(vocab=vocab, merges=[], **kwargs)
    tok.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in tok.get_vocab()]})
    return tok


def _text_config(vocab_size: int, model_type: str = "qwen2", **extra: Any) -> dict[str, Any]:
    return {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        **extra,
    }


def _whisper_audio(model_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_type": model_type,
        "num_mel_bins": 128,
        "d_model": 32,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "max_source_positions": 1500,
        **extra,
    }


def _save(model: Any, tok: Any, fe: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    fe.save_pretrained(folder)
    return folder


def tiny_qwen2_audio(folder: Path) -> Path:
    """``Qwen2AudioForConditionalGeneration`` (encoder 1×32, Qwen2 2×32, vocab 262)."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

    tok = byte_tokenizer(QWEN_SPECIALS, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    cfg = Qwen2AudioConfig(
        audio_config=_whisper_audio("qwen2_audio_encoder"),
        text_config=_text_config(len(tok)),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(SEED)
    model = Qwen2AudioForConditionalGeneration(cfg)
    return _save(model, tok, WhisperFeatureExtractor(feature_size=128), folder)


PHI4_SPECIALS = [
    "<|endoftext|>",
    "<|user|>",
    "<|end|>",
    "<|assistant|>",
    "<|system|>",
    "<|audio|>",
    "<|image|>",
]


def tiny_phi4_multimodal(folder: Path) -> Path:
    """``Phi4MultimodalForCausalLM`` (conformer 1×32, vision tower 1×32, Phi-4 text 2×32, vocab 263)."""
    import torch
    from transformers import Phi4MultimodalConfig, Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM

    tok = byte_tokenizer(
        PHI4_SPECIALS, cls_name="GPT2Tokenizer", pad_token="<|endoftext|>", eos_token="<|end|>"
    )
    audio_id = tok.convert_tokens_to_ids("<|audio|>")
    cfg = Phi4MultimodalConfig(
        **{k: v for k, v in _text_config(len(tok)).items() if k != "model_type"},
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=[tok.convert_tokens_to_ids("<|end|>")],
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "crop_size": 28,
            "image_token_id": tok.convert_tokens_to_ids("<|image|>"),
        },
        audio_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_blocks": 1,
            "num_attention_heads": 2,
            "ext_pw_out_channel": 32,
            "depthwise_separable_out_channel": 32,
            "nemo_conv_channels": 32,
            "audio_token_id": audio_id,
        },
    )
    torch.manual_seed(SEED)
    model = Phi4MultimodalForCausalLM(cfg)
    return _save(model, tok, Phi4MultimodalFeatureExtractor(), folder)


VOXTRAL_SPECIALS = ["<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[AUDIO]", "[BEGIN_AUDIO]"]


def tiny_voxtral(folder: Path) -> Path:
    """``VoxtralForConditionalGeneration`` (encoder 1×32, Llama 2×32, vocab 263)."""
    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration, WhisperFeatureExtractor

    tok = byte_tokenizer(VOXTRAL_SPECIALS, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    audio = {
        "hidden_size": 32,
        "intermediate_size": 128,  # the projector stacks 4 frames: must be 4 × hidden_size
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_mel_bins": 128,
        "max_source_positions": 1500,
    }
    cfg = VoxtralConfig(
        audio_config=audio,
        text_config=_text_config(len(tok), model_type="llama", head_dim=16),
        audio_token_id=tok.convert_tokens_to_ids("[AUDIO]"),
    )
    torch.manual_seed(SEED)
    model = VoxtralForConditionalGeneration(cfg)
    return _save(model, tok, WhisperFeatureExtractor(feature_size=128), folder)


OMNI_SPECIALS = [*QWEN_SPECIALS, "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]


def tiny_qwen_omni_thinker(folder: Path) -> Path:
    """``Qwen2_5OmniThinkerForConditionalGeneration`` (audio 1×32, vision 1×32, text 2×32, vocab 266)."""
    import torch
    from transformers import (
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    tok = byte_tokenizer(OMNI_SPECIALS, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ids = tok.convert_tokens_to_ids
    text = _text_config(len(tok), model_type="qwen2_5_omni_text")
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
    cfg = Qwen2_5OmniThinkerConfig(
        audio_config={**_whisper_audio("qwen2_5_omni_audio_encoder"), "output_dim": 32},
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
        },
        text_config=text,
        audio_token_index=ids("<|AUDIO|>"),
        image_token_index=ids("<|IMAGE|>"),
        video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"),
        audio_end_token_id=ids("<|audio_eos|>"),
        vision_start_token_id=ids("<|vision_bos|>"),
        vision_end_token_id=ids("<|vision_eos|>"),
    )
    torch.manual_seed(SEED)
    model = Qwen2_5OmniThinkerForConditionalGeneration(cfg)
    return _save(model, tok, WhisperFeatureExtractor(feature_size=128), folder)


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_whisper(folder: Path, *, seed: int = SEED) -> Path:
    """``WhisperModel`` (80 mel bins, encoder 1×32, decoder 1×32) and its feature extractor."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    cfg = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=64,
        decoder_start_token_id=1,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    WhisperModel(cfg).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def tiny_causal_lm(folder: Path, *, seed: int = SEED) -> Path:
    """``LlamaForCausalLM`` (2×32, vocab 259) with a ChatML chat template, like SmolLM2-Instruct."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>")
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = CHATML_TEMPLATE
    cfg = LlamaConfig(
        **{k: v for k, v in _text_config(len(tok)).items() if k != "model_type"},
        head_dim=16,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


OLD_PHI4_LORA_WRAPPED = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def tiny_phi4_old_layout(folder: Path) -> Path:
    """The tiny Phi-4-multimodal saved as the hub's ``main`` lays it out for its remote code.

    The language model's fused projections (``qkv_proj``, ``gate_up_proj``) and the others are LoRA-wrapped:
    their weights are stored as ``*.base_layer.weight``, names the native class does not know, so it would
    initialise them at random.
    """
    from safetensors.torch import load_file, save_file

    tiny_phi4_multimodal(folder)
    weights = folder / "model.safetensors"
    renamed = {}
    for name, tensor in load_file(weights).items():
        if name.startswith("model.layers.") and any(f".{p}.weight" in name for p in OLD_PHI4_LORA_WRAPPED):
            name = name.removesuffix(".weight") + ".base_layer.weight"
        renamed[name] = tensor
    save_file(renamed, weights, metadata={"format": "pt"})
    return folder


def drop_weight(folder: Path, contains: str) -> str:
    """Remove the first tensor whose name contains ``contains`` from ``folder/model.safetensors``; its name."""
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if contains in k)
    del tensors[name]
    save_file(tensors, weights, metadata={"format": "pt"})
    return name
