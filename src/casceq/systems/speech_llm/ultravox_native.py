r"""A native Ultravox-architecture speech LLM: Whisper encoder -> stacking projector -> any causal LM.

Ultravox itself is not in transformers (its hub code targets transformers 4.x); this builds the same shape from
native parts, so any Whisper checkpoint and any ``AutoModelForCausalLM`` (e.g. SmolLM2, Gemma 3) can be paired
and a projector trained between them (``ultravox_projector``; the trainer is a separate command).

Prompt: the backbone's own chat template with the user turn ``"<|audio|>\n{instruction}"``; the text is cut
at ``<|audio|>`` and the clip's embeddings go in between. The placeholder id is ``len(tokenizer)``, an id the
tokenizer never produces, so the backbone's vocabulary and embeddings are untouched: placeholder positions
are looked up as id 0 and then overwritten with audio embeddings.

Encoder input mode (``encoder_mode``, stored in the checkpoint; use the same in training and inference):

- ``"padded"`` (default): each ≤ 30 s chunk is padded to Whisper's 3000-frame window, as Whisper was trained;
  the encoder frames of the real audio are kept. Costs a full window per chunk.
- ``"unpadded"``: the encoder's forward is replayed on the chunk's own frames (positions sliced). About 9×
  faster on short clips, but the frames differ from the padded run's (cosine ≈ 0.90 measured on Whisper base):
  a projector trained in one mode is wrong in the other.

Each 30 s chunk is stacked separately (as Ultravox does), so a clip gives ``Σ ceil(frames_c / k)`` embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from casceq.errors import InputError
from casceq.systems.llm.prompting import PromptFormat, render, task_of_prompt
from casceq.systems.loading import checked_load
from casceq.systems.speech_llm._hf import (
    AUDIO,
    AUDIO_SLOT,
    SAMPLE_RATE,
    Anatomy,
    EncodedBatch,
    HFSpeechLLM,
    Piece,
    Special,
)
from casceq.systems.speech_llm.matched_prompt import MARK, split_rendered
from casceq.systems.speech_llm.ultravox_projector import (
    ProjectorConfig,
    build_projector,
    load_projector,
    read_checkpoint_record,
    save_projector,
    weights_fingerprint,
)

AUDIO_PLACEHOLDER = "<|audio|>"
AUDIO_SENTENCE = "The input is the audio."
"""The line of the runner's speech prompt that stands where a text prompt has the input text."""
CHUNK_SAMPLES = 30 * SAMPLE_RATE
EncoderMode = Literal["padded", "unpadded"]
PromptStyle = Literal["chat", "matched"]


@dataclass(frozen=True)
class UltravoxNativeConfig:
    r"""What a native Ultravox model is made of.

    Attributes:
        encoder: Hub id or folder of a Whisper model (its encoder is used, frozen).
        backbone: Hub id or folder of a causal LM (frozen).
        backbone_name: The backbone id used to match this system with its cascade (default: folder name).
        encoder_mode: ``"padded"`` (30 s window) or ``"unpadded"`` (replay on the real frames).
        stack_factor: Encoder frames per audio embedding.
        hidden_dim: Projector MLP width.
        activation: ``"swiglu"`` or ``"gelu"``.
        norm: ``"rms"`` or ``"layer"``.
        prompt: ``"chat"``: the user turn ``"<|audio|>\n{instruction}"`` in the backbone's chat template (or
            plain). ``"matched"``: the prompt the matched cascade gives the backbone, k shots included, with the
            audio where the cascade puts the transcript (``casceq.systems.speech_llm.matched_prompt``).
        few_shot: Task -> k shots of the ``"matched"`` prompt (the cascade's ``few_shot`` setting).
    """

    encoder: str
    backbone: str
    backbone_name: str | None = None
    encoder_mode: EncoderMode = "padded"
    stack_factor: int = 8
    hidden_dim: int = 2048
    activation: Literal["swiglu", "gelu"] = "swiglu"
    norm: Literal["rms", "layer"] = "rms"
    prompt: PromptStyle = "chat"
    few_shot: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoder_mode not in ("padded", "unpadded"):
            raise InputError(f"encoder_mode must be 'padded' or 'unpadded', not {self.encoder_mode!r}")
        if self.prompt not in ("chat", "matched"):
            raise InputError(f"prompt must be 'chat' or 'matched', not {self.prompt!r}")


def encoder_frames(encoder: Any, feature_extractor: Any, audio: np.ndarray, mode: EncoderMode) -> list[Any]:
    """Run the encoder on one clip: output frames, one tensor [T_c, D] per 30 s chunk (real audio only, no padding)."""
    import torch

    out = []
    for start in range(0, len(audio), CHUNK_SAMPLES):
        chunk = audio[start : start + CHUNK_SAMPLES]
        padding = "max_length" if mode == "padded" else "longest"
        feats = feature_extractor(
            chunk, sampling_rate=SAMPLE_RATE, padding=padding, return_attention_mask=True, return_tensors="pt"
        )
        n_frames = int(feats["attention_mask"].sum())
        n_out = (n_frames + 1) // 2  # conv2 has stride 2, padding 1
        x = feats["input_features"].to(encoder.device, encoder.dtype)
        if mode == "padded":
            hidden = encoder(x).last_hidden_state[0]
        else:
            x = x[..., :n_frames]
            # Replay of WhisperEncoder.forward without its 3000-frame check: positions sliced to the input.
            h = torch.nn.functional.gelu(encoder.conv1(x))
            h = torch.nn.functional.gelu(encoder.conv2(h)).permute(0, 2, 1)
            h = h + encoder.embed_positions.weight[: h.shape[1]]
            for layer in encoder.layers:
                h = layer(h, None)
                h = h[0] if isinstance(h, tuple) else h
            hidden = encoder.layer_norm(h)[0]
        out.append(hidden[:n_out])
    return out


class UltravoxNativeBackend(HFSpeechLLM):
    """Whisper encoder + Ultravox projector + causal LM, answering and scoring like the other adapters."""

    family = "ultravox-native"

    def __init__(
        self,
        config: UltravoxNativeConfig,
        encoder: Any,
        feature_extractor: Any,
        projector: Any,
        lm: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        few_shot_seed: int = 0,
    ) -> None:
        import dataclasses

        name = config.backbone_name or Path(config.backbone.rstrip("/")).name
        self.config = dataclasses.replace(config, backbone_name=name)
        self.encoder = encoder.eval()
        self.projector = projector.to(lm.device, lm.dtype).eval()
        if projector.config.head == "ctc":
            self._attach_table(lm)
        # The cascade draws its shots with the run's seed from the far end of the task's ranking: so do we.
        super().__init__(
            lm,
            tokenizer,
            feature_extractor,
            backbone=name,
            batch_size=batch_size,
            few_shot=dict(config.few_shot),
            few_shot_seed=few_shot_seed,
        )

    # ---- construction -------------------------------------------------------------------------------------
    @staticmethod
    def _load_parts(config: UltravoxNativeConfig, dtype: str, device: str) -> tuple[Any, Any, Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperFeatureExtractor, WhisperModel

        whisper, enc_report = checked_load(
            WhisperModel.from_pretrained, config.encoder, dtype=dtype, device=device
        )
        encoder = whisper.encoder
        encoder.load_report = enc_report
        fe = WhisperFeatureExtractor.from_pretrained(config.encoder)
        lm, _ = checked_load(
            AutoModelForCausalLM.from_pretrained, config.backbone, dtype=dtype, device=device
        )
        tok = AutoTokenizer.from_pretrained(config.backbone)
        return encoder, fe, lm, tok

    @classmethod
    def create(
        cls,
        config: UltravoxNativeConfig,
        *,
        seed: int = 0,
        dtype: str = "auto",
        device: str = "auto",
        few_shot_seed: int = 0,
    ) -> UltravoxNativeBackend:
        """Load encoder and backbone and attach a freshly initialised (seeded) projector, ready to train."""
        import torch

        encoder, fe, lm, tok = cls._load_parts(config, dtype, device)
        pcfg = ProjectorConfig(
            encoder_dim=encoder.config.d_model,
            llm_dim=lm.get_input_embeddings().embedding_dim,
            stack_factor=config.stack_factor,
            hidden_dim=config.hidden_dim,
            activation=config.activation,
            norm=config.norm,
        )
        torch.manual_seed(seed)
        return cls(config, encoder, fe, build_projector(pcfg), lm, tok, few_shot_seed=few_shot_seed)

    @classmethod
    def from_checkpoint(
        cls,
        folder: str | Path,
        *,
        encoder: str | None = None,
        backbone: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 8,
        few_shot: dict[str, int] | None = None,
        few_shot_seed: int = 0,
    ) -> UltravoxNativeBackend:
        """Load a saved projector with its encoder and backbone (paths from the checkpoint unless given).

        ``few_shot`` overrides the shots of a ``"matched"`` prompt recorded in the checkpoint (the ones it was
        trained with); ``few_shot_seed`` is the run's seed, which the matched cascade draws its shots with.

        Raises:
            InputError: The encoder or backbone weights are not the ones the projector was trained against.
        """
        record = read_checkpoint_record(folder)
        if not isinstance(record.get("model"), dict):
            raise InputError(
                "no 'model' section (encoder, backbone, mode)", path=str(Path(folder) / "projector.json")
            )
        fields = {
            k: record["model"][k] for k in UltravoxNativeConfig.__dataclass_fields__ if k in record["model"]
        }
        if few_shot is not None:
            fields["few_shot"] = dict(few_shot)
        config = UltravoxNativeConfig(
            **{**fields, "encoder": encoder or fields["encoder"], "backbone": backbone or fields["backbone"]}
        )
        enc, fe, lm, tok = cls._load_parts(config, dtype, device)
        projector, _ = load_projector(
            folder, encoder_hash=weights_fingerprint(enc), backbone_hash=weights_fingerprint(lm)
        )
        return cls(config, enc, fe, projector, lm, tok, batch_size=batch_size, few_shot_seed=few_shot_seed)

    def _attach_table(self, lm: Any) -> None:
        import torch

        with torch.no_grad():
            self.projector.attach_table(lm.get_input_embeddings()(self.projector.vocab_ids.to(lm.device)))
            if self.projector.config.voice_classes:
                embed = lm.get_input_embeddings()
                self.projector.attach_voice_table(embed(self.projector.voice_ids.to(lm.device)))

    def use_ctc_head(self, vocab_ids: list[int], *, seed: int = 0) -> None:
        """Replace the projector by a fresh (seeded) ``"ctc"``-head one emitting ``vocab_ids`` (blank first)."""
        import dataclasses

        import torch

        pcfg = dataclasses.replace(self.projector.config, head="ctc", vocab_size=len(vocab_ids) - 1)
        torch.manual_seed(seed)
        projector = build_projector(pcfg)
        projector.vocab_ids.copy_(torch.tensor(vocab_ids, dtype=torch.long))
        self.projector = projector.to(self.model.device, self.model.dtype)
        self._attach_table(self.model)

    def ctc_transcript(self, audio: np.ndarray) -> str:
        """Greedy CTC transcript of a ``"ctc"``-head clip: the tokens its audio positions are peaked on."""
        import torch

        if self.projector.config.head != "ctc":
            raise InputError("only a 'ctc' projector head has a transcript")
        frames = encoder_frames(self.encoder, self.feature_extractor, audio, self.config.encoder_mode)
        ids: list[int] = []
        with torch.inference_mode():
            for f in frames:
                logits = self.projector.hidden(f.to(self.model.device, self.model.dtype))
                best = logits.argmax(-1)
                ids += [int(self.projector.vocab_ids[best[a]]) for a, _ in self.projector.segments(logits)]
        return str(self.tokenizer.decode(ids)).strip()

    def audio_position_seconds(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Start and end seconds of each audio position of a ``"ctc"``-head clip (None: uniform positions)."""
        import torch

        if self.projector.config.head != "ctc":
            return None
        frames = encoder_frames(self.encoder, self.feature_extractor, audio, self.config.encoder_mode)
        group_s = 0.02 * self.config.stack_factor
        starts: list[float] = []
        ends: list[float] = []
        with torch.inference_mode():
            for c, f in enumerate(frames):
                for a, b in self.projector.compress(f.to(self.model.device, self.model.dtype))[1]:
                    starts.append(c * 30.0 + a * group_s)
                    ends.append(c * 30.0 + b * group_s)
        return np.array(starts), np.array(ends)

    def save(self, folder: str | Path) -> Path:
        """Save the projector with its config and the fingerprints of this encoder and backbone."""
        import dataclasses

        return save_projector(
            folder,
            self.projector,
            self.projector.config,
            encoder_hash=weights_fingerprint(self.encoder),
            backbone_hash=weights_fingerprint(self.model),
            model=dataclasses.asdict(self.config),
        )

    # ---- audio --------------------------------------------------------------------------------------------
    @property
    def audio_token_id(self) -> int:
        """``len(tokenizer)``: a placeholder id outside the tokenizer's range."""
        return len(self.tokenizer)

    def audio_embeddings(self, audio: np.ndarray) -> Any:
        """Audio embeddings [n, llm_dim] of one 16 kHz clip (encoder frames stacked per 30 s chunk)."""
        import torch

        frames = encoder_frames(self.encoder, self.feature_extractor, audio, self.config.encoder_mode)
        dtype = self.model.dtype
        return torch.cat([self.projector(f.to(self.model.device, dtype)) for f in frames], 0)

    def _audio_inputs(self, audios: list[np.ndarray]) -> tuple[dict[str, Any], list[int]]:
        import torch

        with torch.inference_mode():
            embeds = [self.audio_embeddings(a) for a in audios]
        return {"audio_embeds": embeds}, [int(e.shape[0]) for e in embeds]

    def option_text(self, option: str) -> str:
        """An option as scored after the prompt: after a space in the matched (plain) prompt."""
        return " " + option if self.config.prompt == "matched" else option

    def _pieces(self, prompt: str) -> list[Piece]:
        if self.config.prompt == "matched":
            return self._matched_pieces(prompt)
        user = prompt if AUDIO_SLOT in prompt else f"{AUDIO_PLACEHOLDER}\n{prompt}"
        if getattr(self.tokenizer, "chat_template", None):
            messages = []
            for question, answer in self.shots_for(prompt):  # the cascade's shots, as earlier text turns
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            messages.append({"role": "user", "content": user})
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{user}\n"
        before, _, after = str(text).partition(AUDIO_PLACEHOLDER)
        return [p for p in (before, AUDIO, after) if p != ""]

    def _matched_pieces(self, prompt: str) -> list[Piece]:
        """The matched cascade's prompt (plain format, its shots) with the audio in the transcript's place.

        ``prompt`` is the runner's speech prompt (``casceq.systems.compose.speech_prompt``), i.e.
        ``Task.prompt(AUDIO_SLOT, example)``: it is rendered exactly as the cascade renders
        ``Task.prompt(transcript)``, the audio in the transcript's place. The older wording with the line
        ``"The input is the audio."`` (training prompts) is read the same way.
        """
        task = task_of_prompt(prompt)
        if task is not None and AUDIO_SLOT in prompt:  # Task.prompt(AUDIO_SLOT): the runner's speech prompt
            body = prompt.replace(AUDIO_SLOT, MARK, 1)
            shots = self.shots_for(body)
        elif task is not None and AUDIO_SENTENCE in prompt:  # the older wording (training prompts)
            body = prompt.replace(AUDIO_SENTENCE, f"{task.input_name}: {MARK}", 1)
            shots = self.shots_for(body)
        elif AUDIO_SLOT in prompt:  # not a task's prompt, but it says where the audio goes
            body, shots = prompt.replace(AUDIO_SLOT, MARK, 1), ()
        else:  # not a task's prompt (e.g. the mechanistic captures' "Transcribe the audio."): same layout, no shots
            body, shots = f"{prompt.strip()}\n\nText: {MARK}\nAnswer:", ()
        before, after = split_rendered(render(self.tokenizer, PromptFormat(chat=False), body, shots))
        bos = self.tokenizer.bos_token
        return [p for p in (Special(bos) if bos else "", before, AUDIO, after) if p != ""]

    # ---- model calls ---------------------------------------------------------------------------------------
    def embed(self, batch: EncodedBatch) -> Any:
        """Input embeddings [B, L, D]: token embeddings with each row's audio span replaced by its clip's."""
        ids = batch.input_ids.to(self.model.device)
        is_audio = ids == self.audio_token_id
        embeds = self.model.get_input_embeddings()(ids.masked_fill(is_audio, 0))
        audio = batch.audio_kwargs["audio_embeds"]
        for j in range(ids.shape[0]):
            embeds[j, is_audio[j]] = audio[j].to(embeds.dtype)
        return embeds

    def model_output(self, batch: EncodedBatch, *, use_cache: bool = False) -> Any:
        """Run the backbone on the spliced embeddings; return its output (``.logits`` [B, L, V], ``.past_key_values``)."""
        return self.model(
            inputs_embeds=self.embed(batch),
            attention_mask=batch.attention_mask.to(self.model.device),
            position_ids=batch.position_ids().to(self.model.device),
            use_cache=use_cache,
        )

    def _generate_ids(self, batch: EncodedBatch, max_new_tokens: int) -> Any:
        # With inputs_embeds and no input_ids, generate returns only the new tokens.
        return self.model.generate(
            inputs_embeds=self.embed(batch),
            attention_mask=batch.attention_mask.to(self.model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_token_id,
        )

    def describe(self) -> Anatomy:
        """Locate the backbone's decoder layers, final norm and unembedding; the placeholder id."""
        decoder = self.model.get_decoder()
        return Anatomy(decoder.layers, decoder.norm, self.model.get_output_embeddings(), self.audio_token_id)
