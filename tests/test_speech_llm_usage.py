"""Speech LLMs used as their official usage says (issue 20): checked loading, answers that can be INVALID,
Gemini's thinking budget, symmetric matched prompts, the backbone registry, dtype auto, Ultravox's pipeline
settings and Voxtral's special tokens."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from casceq.errors import InputError  # noqa: E402
from casceq.systems.loading import WeightsError, resolve_dtype_device  # noqa: E402
from casceq.systems.speech_llm import SpeechLLMSpec, make_speech_llm  # noqa: E402
from tests import tiny_models as tm  # noqa: E402

SR = 16_000


def _clips(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(SR + 4000 * i)).astype(np.float32) for i in range(n)]


# ---- 1. loading refuses missing or newly initialised weights ---------------------------------------------------
def test_phi4_in_the_hubs_old_remote_code_layout_is_refused(tmp_path: Path) -> None:
    folder = tm.tiny_phi4_old_layout(tmp_path / "old")
    spec = SpeechLLMSpec("phi4-mm", str(folder), backbone="t", options={"speech_lora": None})
    with pytest.raises(WeightsError, match=r"qkv_proj\.weight") as err:
        make_speech_llm(spec)
    assert "gate_up_proj.weight" in str(err.value) and "refs/pr/70" in str(err.value)


def test_phi4_in_the_native_layout_loads_with_a_clean_report(tmp_path: Path) -> None:
    folder = tm.tiny_phi4_multimodal(tmp_path / "native")
    backend = make_speech_llm(
        SpeechLLMSpec("phi4-mm", str(folder), backbone="t", options={"speech_lora": None})
    )
    report = backend.model.load_report
    assert report.ok and report.missing == () and report.mismatched == ()
    assert (report.dtype, report.device) == ("float32", "cpu")  # "auto" on this CPU machine


def test_phi4_official_hub_id_defaults_to_the_native_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.speech_llm import phi4_mm

    seen: dict[str, Any] = {}

    def fake_load_parts(path: str, loader: Any, **kwargs: Any) -> Any:
        seen.update(kwargs, path=path)
        raise RuntimeError("stop here")

    monkeypatch.setattr(phi4_mm, "load_parts", fake_load_parts)
    with pytest.raises(RuntimeError, match="stop here"):
        phi4_mm.Phi4MMBackend.from_pretrained("microsoft/Phi-4-multimodal-instruct", backbone="t")
    assert seen["revision"] == "refs/pr/70"
    seen.clear()
    with pytest.raises(RuntimeError):
        phi4_mm.Phi4MMBackend.from_pretrained("someone/phi4-finetune", backbone="t")
    assert "revision" not in seen  # other repositories: their own default


@pytest.mark.parametrize(
    ("family", "build", "drop"),
    [
        ("qwen2-audio", tm.tiny_qwen2_audio, "layers.0.self_attn.q_proj.weight"),
        ("voxtral", tm.tiny_voxtral, "layers.1.mlp.up_proj.weight"),
        ("qwen2.5-omni", tm.tiny_qwen_omni_thinker, "layers.0.mlp.down_proj.weight"),
        ("phi4-mm", tm.tiny_phi4_multimodal, "layers.0.self_attn.qkv_proj.weight"),
    ],
)
def test_every_transformers_adapter_refuses_a_missing_weight(
    tmp_path: Path, family: str, build: Any, drop: str
) -> None:
    folder = build(tmp_path / "m")
    name = tm.drop_weight(folder, drop)
    opts = {"speech_lora": None} if family == "phi4-mm" else {}
    with pytest.raises(WeightsError, match=name.split(".", 1)[-1].replace(".", r"\.")):
        make_speech_llm(SpeechLLMSpec(family, str(folder), backbone="t", options=opts))


def test_native_ultravox_and_the_text_llm_refuse_a_missing_weight(tmp_path: Path) -> None:
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    lm = tm.tiny_causal_lm(tmp_path / "lm")
    tm.drop_weight(lm, "layers.0.mlp.gate_proj")
    with pytest.raises(WeightsError, match="gate_proj"):
        HFCausalLM(str(lm))
    cfg = UltravoxNativeConfig(encoder=str(tm.tiny_whisper(tmp_path / "w")), backbone=str(lm), hidden_dim=64)
    with pytest.raises(WeightsError, match="gate_proj"):
        UltravoxNativeBackend.create(cfg, seed=0)


# ---- 2. an empty or all -inf answer is INVALID; Gemini's thinking budget --------------------------------------
def _answer(mode: str, scores: np.ndarray | None = None, texts: list[str] | None = None) -> list[Any]:
    from casceq.systems.answer import answer_batch
    from casceq.tasks import get_task
    from casceq.types import Example

    task = get_task("sst2")
    n = len(scores) if scores is not None else len(texts or [])
    examples = [Example(id=f"x{i}", task="sst2", text="t", label="positive") for i in range(n)]
    return answer_batch(
        task=task,
        examples=examples,
        mode=mode,  # type: ignore[arg-type]
        score=lambda opts: scores,  # type: ignore[arg-type,return-value]
        generate=lambda k: list(texts or []),
    )


def test_a_row_without_finite_scores_is_invalid_not_the_first_label() -> None:
    rows = np.array([[-np.inf, -np.inf], [np.nan, -1.0], [-np.inf, 0.0], [-2.0, -1.0]])
    labels = [label for _, label, _ in _answer("score", scores=rows)]
    assert labels == ["INVALID", "INVALID", "positive", "positive"]  # sst2 labels: negative, positive


def test_empty_generations_are_invalid_and_answers_are_cut_at_the_first_line() -> None:
    out = _answer("generate", texts=["", "   ", "positive\nnegative", "\n"])
    assert [label for _, label, _ in out] == ["INVALID", "INVALID", "positive", "INVALID"]
    assert out[2][0] == "positive"  # the same first-line cut as the cascade's LLM applies


@pytest.mark.parametrize(
    ("model", "budget", "cap"),
    [
        ("gemini-2.5-flash", 0, 8),
        ("models/gemini-2.5-flash-lite", 0, 8),
        ("gemini-2.5-pro", 128, 136),
        ("gemini-2.0-flash", None, 8),
    ],
)
def test_gemini_requests_leave_room_for_the_answer(model: str, budget: int | None, cap: int) -> None:
    from casceq.systems.speech_llm.gemini import build_request

    req = build_request(model, _clips(1)[0], "Is it positive?", max_new_tokens=8)
    assert req.config["max_output_tokens"] == cap
    assert req.config.get("thinking_config", {}).get("thinking_budget") == budget
    assert req.config["temperature"] == 0.0


class _Response:
    def __init__(self, text: str | None, reason: str) -> None:
        self.text = text
        self.candidates = [type("C", (), {"finish_reason": reason})()]


class FakeGemini:
    """A stand-in for ``google.genai.Client``: records the configs it gets, answers from a list."""

    def __init__(self, texts: list[str | None], reason: str = "STOP") -> None:
        self.texts, self.reason, self.configs, self.contents = list(texts), reason, [], []
        self.models = self

    def generate_content(self, *, model: str, contents: Any, config: Any) -> _Response:
        self.configs.append(config)
        self.contents.append(contents)
        return _Response(self.texts.pop(0), self.reason)


def _fake_genai_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """``google.genai.types`` stand-ins (the SDK is optional): parts and configs keep what they are given."""
    import sys
    import types as pytypes

    class Part:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw

        @classmethod
        def from_bytes(cls, **kw: Any) -> Part:
            return cls(**kw)

    class GenerateContentConfig(pytypes.SimpleNamespace):
        pass

    genai = pytypes.ModuleType("google.genai")
    genai.types = pytypes.SimpleNamespace(Part=Part, GenerateContentConfig=GenerateContentConfig)  # type: ignore[attr-defined]
    google = sys.modules.get("google") or pytypes.ModuleType("google")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.genai", genai)
    monkeypatch.setitem(sys.modules, "google.genai.types", genai.types)  # type: ignore[attr-defined]
    monkeypatch.setattr(google, "genai", genai, raising=False)


def test_gemini_empty_answers_become_invalid_and_the_audio_sits_at_the_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_genai_types(monkeypatch)
    from casceq.systems.compose import speech_prompt
    from casceq.systems.speech_llm.gemini import GeminiBackend
    from casceq.tasks import get_task
    from casceq.types import Example

    client = FakeGemini([None, "positive"], reason="MAX_TOKENS")
    backend = GeminiBackend(client, "gemini-2.5-flash")
    assert backend.settings["thinking_config"] == {"thinking_budget": 0}  # recorded with the system
    task = get_task("sst2")
    ex = Example(id="x", task="sst2", text="t", label="positive")
    answers = backend.generate(_clips(2), [speech_prompt(task, ex)] * 2, 8)
    assert answers == ["", "positive"]
    assert client.configs[0].thinking_config == {"thinking_budget": 0}
    assert [label for _, label, _ in _answer("generate", texts=answers)] == ["INVALID", "positive"]
    parts = client.contents[0]
    assert isinstance(parts[0], str) and parts[0].endswith("Text: ")  # the instruction, then the audio part
    assert not isinstance(parts[1], str) and parts[2] == "\nAnswer:"


def test_gemini_refuses_shots_it_cannot_send() -> None:
    from casceq.systems.speech_llm.gemini import GeminiBackend

    with pytest.raises(InputError, match="zero-shot"):
        GeminiBackend(object(), "gemini-2.5-flash", few_shot=4)


# ---- 3. dtype and device auto -------------------------------------------------------------------------------
def test_dtype_and_device_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SpeechLLMSpec.parse("qwen2-audio:x").dtype == "auto"
    assert resolve_dtype_device() == ("float32", "cpu") or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_dtype_device() == ("bfloat16", "cuda")
    assert resolve_dtype_device("float32", "auto") == ("float32", "cuda")
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype_device("fp8", "cpu")


# ---- 4. matched pairs are symmetric ----------------------------------------------------------------------------
def _render(backend: Any, prompt: str) -> str:
    """A speech adapter's prompt as text: specials by name, the audio item as ``<AUDIO>``."""
    from casceq.systems.speech_llm._hf import AUDIO

    return "".join("<AUDIO>" if p is AUDIO else str(p) for p in backend._pieces(prompt))


def test_a_matched_pair_differs_only_in_the_input_slot(tmp_path: Path) -> None:
    """Qwen2-Audio vs its cascade on Qwen-7B-Chat (explicit ChatML): same instruction, shots, choices, order."""
    from casceq.systems.compose import cascade_prompt, speech_prompt
    from casceq.systems.llm.prompting import choose_format, render
    from casceq.tasks import get_task
    from casceq.types import Example

    folder = tm.tiny_qwen2_audio(tmp_path / "q")
    shots = (
        ("Classify.\n\nText: great\nAnswer:", "positive"),
        ("Classify.\n\nText: awful\nAnswer:", "negative"),
    )
    backend = make_speech_llm(SpeechLLMSpec("qwen2-audio", str(folder), backbone="t"))
    backend.shots_for = lambda prompt: shots
    task = get_task("csqa")
    ex = Example(id="x", task="csqa", text="Where?", label="A", choices=("a", "b", "c", "d", "e"))
    transcript = "where do you keep a cup"
    speech = _render(backend, speech_prompt(task, ex))
    tok = tm.byte_tokenizer(tm.QWEN_SPECIALS)  # no chat template, like Qwen-7B-Chat's tokenizer
    cascade = render(tok, choose_format(tok, "chatml"), cascade_prompt(task, ex, transcript), shots)
    audio_item = "Audio 1: <|audio_bos|><AUDIO><|audio_eos|>\n"
    s_before, _, s_after = speech.partition(audio_item)
    c_before, _, c_after = cascade.partition(transcript)
    assert (s_before, s_after) == (c_before, c_after)
    assert s_before.count("<|im_start|>user") == 3 and "A. a\nB. b" in s_after  # shots, then the query


def test_speech_adapters_take_the_cascades_shots(tmp_path: Path) -> None:
    from casceq.systems.compose import speech_prompt
    from casceq.systems.llm.prompting import AutoShots
    from casceq.tasks import get_task
    from casceq.types import Example

    folder = tm.tiny_phi4_multimodal(tmp_path / "p")
    opts = {"speech_lora": None, "few_shot": 2, "few_shot_seed": 7}
    backend = make_speech_llm(SpeechLLMSpec("phi4-mm", str(folder), backbone="t", options=opts))
    task = get_task("sst2")
    prompt = speech_prompt(task, Example(id="x", task="sst2", text="", label="positive"))
    cascade_shots = AutoShots(2, 7)(prompt)  # what HFCausalLM(few_shot=2, few_shot_seed=7) shows
    assert len(cascade_shots) == 2 and backend.shots_for(prompt) == cascade_shots
    text = _render(backend, prompt)
    for question, answer in cascade_shots:
        assert f"<|user|>{question}<|end|><|assistant|>{answer}<|end|>" in text
    assert text.endswith("Text: <AUDIO>\nAnswer:<|end|><|assistant|>")
    scores = backend.score_options(_clips(1), [prompt], [list(task.labels)])
    assert np.isfinite(scores).all()


def test_bundled_matched_prompt_renders_as_before() -> None:
    """The shipped model's prompt is unchanged: the slot form renders exactly as the older wording did."""
    from casceq.systems.compose import speech_prompt
    from casceq.systems.speech_llm.ultravox_native import AUDIO_SENTENCE
    from casceq.tasks import get_task
    from casceq.types import Example

    task = get_task("csqa")
    ex = Example(id="x", task="csqa", text="", label="A", choices=("a", "b", "c", "d", "e"))
    old = f"{task.instruction}\n\n{AUDIO_SENTENCE}\n" + "\n".join(
        f"{k}. {c}" for k, c in zip(task.labels, ex.choices, strict=True)
    )
    old += "\nAnswer:"
    new = speech_prompt(task, ex)
    assert new.replace("<|audio|>", "X") == task.prompt("X", ex)

    class Stub:  # only what _matched_pieces reads
        tokenizer = type("T", (), {"bos_token": "<bos>"})()

        def shots_for(self, body: str) -> tuple[()]:
            return ()

    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend

    def pieces(prompt: str) -> list[Any]:
        return UltravoxNativeBackend._matched_pieces(Stub(), prompt)  # type: ignore[arg-type]

    assert [str(p) for p in pieces(new)] == [str(p) for p in pieces(old)]


# ---- 5. backbone registry, LLM back end options, Ultravox pipeline, Voxtral specials ---------------------------
def test_registry_pairs_each_release_with_a_loadable_instruct_llm() -> None:
    from casceq.run.build import backbone_of
    from casceq.systems.speech_llm import BACKBONES

    for release, info in BACKBONES.items():
        if info.llm is None:
            assert "no open weights" in info.note, release
            continue
        assert info.llm.startswith("hf:") and ("instruct" in info.llm.lower() or "chat" in info.llm.lower())
        if backbone_of(info.llm) != info.name.lower():  # paired by declaration only: it must say so
            assert release.startswith("qwen2-audio") and info.settings["trust_remote_code"] is True
    qwen = BACKBONES["qwen2-audio-7b-instruct"]
    assert (qwen.llm, qwen.settings["chat_template"]) == ("hf:Qwen/Qwen-7B-Chat", "chatml")


def test_a_declared_backbone_that_differs_from_the_registry_warns_naming_both(tmp_path: Path) -> None:
    folder = tm.tiny_qwen2_audio(tmp_path / "Qwen2-Audio-7B-Instruct")
    with pytest.warns(UserWarning, match=r"'llama-3-8b'.*'Qwen-7B'"):
        make_speech_llm(SpeechLLMSpec("qwen2-audio", str(folder), backbone="llama-3-8b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_speech_llm(SpeechLLMSpec("qwen2-audio", str(folder), backbone="qwen-7b"))


def test_text_llm_takes_remote_code_opt_in_and_an_explicit_chatml_template(tmp_path: Path) -> None:
    from casceq.systems.llm.hf import HFCausalLM

    folder = tm.tiny_causal_lm(tmp_path / "lm")
    llm = HFCausalLM(str(folder), chat_template="chatml", trust_remote_code=True)
    ctx = llm.context("Classify.\n\nText: hi\nAnswer:", shots=())
    assert ctx == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nClassify.\n\nText: hi\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    )
    assert llm.load_report.ok and llm.load_report.device == "cpu"


class _FakeTok:
    eos_token_id, unk_token_id = 9, 0

    def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def convert_tokens_to_ids(self, name: str) -> int:
        return {"<|eot_id|>": 7}.get(name, 0)


class _FakeProcessor:
    tokenizer = _FakeTok()

    def __call__(self, **kw: Any) -> dict[str, Any]:
        return {"input_ids": torch.tensor([[1, 2, 3]]), "audio_values": torch.ones(1, 4, dtype=torch.float32)}


class _FakeUltravox:
    dtype, device = torch.bfloat16, torch.device("cpu")

    def __init__(self, echo: bool) -> None:
        self.echo, self.calls = echo, []

    def eval(self) -> _FakeUltravox:
        return self

    def generate(self, **kw: Any) -> Any:
        self.calls.append(kw)
        new = torch.tensor([[5, 6]])
        return torch.cat([kw["input_ids"], new], 1) if self.echo else new


@pytest.mark.parametrize("echo", [True, False], ids=["returns-prompt-too", "returns-new-tokens-only"])
def test_ultravox_hub_code_follows_the_official_pipeline(echo: bool) -> None:
    from casceq.systems.speech_llm.ultravox_remote import UltravoxRemoteBackend

    model = _FakeUltravox(echo)
    backend = UltravoxRemoteBackend(model, _FakeProcessor(), backbone="llama")
    decoded: list[Any] = []
    backend.processor.tokenizer.decode = lambda ids, **kw: decoded.append(ids.tolist()) or "ok"  # type: ignore[attr-defined]
    assert backend.generate(_clips(1), ["Is it positive?"], 8) == ["ok"]
    call = model.calls[0]
    assert call["repetition_penalty"] == 1.1 and call["do_sample"] is False
    assert call["eos_token_id"] == [9, 7]  # EOS and <|eot_id|>
    assert call["audio_values"].dtype == torch.bfloat16  # cast to the model's dtype
    assert decoded == [[5, 6]]  # the new tokens, whichever shape generate returned


def test_voxtral_special_tokens_come_from_the_control_token_path(tmp_path: Path) -> None:
    from casceq.systems.speech_llm.voxtral import VoxtralBackend

    backend = make_speech_llm(SpeechLLMSpec("voxtral", str(tm.tiny_voxtral(tmp_path / "v")), backbone="t"))
    ids = {n: backend.special_id(n) for n in ("<s>", "[INST]", "[/INST]", "[BEGIN_AUDIO]", "[AUDIO]")}
    assert ids["[AUDIO]"] == backend.audio_token_id and len(set(ids.values())) == 5

    class Tekken:  # mistral-common's Tekkenizer: control tokens have their own ids
        def get_control_token(self, name: str) -> int:
            return {"[INST]": 3, "[/INST]": 4, "[AUDIO]": 24, "[BEGIN_AUDIO]": 25}[name]

    class MistralLike:
        bos_token_id, eos_token_id, unk_token_id = 1, 2, 0
        all_special_ids = (0, 1, 2, 3, 4, 24, 25)
        tokenizer = type("M", (), {"instruct_tokenizer": type("I", (), {"tokenizer": Tekken()})()})()

        def convert_tokens_to_ids(self, name: str) -> int:
            return 1500  # what a plain vocabulary lookup might give: a text token

    stub = VoxtralBackend.__new__(VoxtralBackend)
    stub.tokenizer, stub._special_ids = MistralLike(), None
    got = [stub.special_id(n) for n in ("<s>", "[INST]", "[/INST]", "[BEGIN_AUDIO]", "[AUDIO]")]
    assert got == [1, 3, 4, 25, 24]


def test_a_special_token_that_resolves_to_text_is_refused(tmp_path: Path) -> None:
    backend = make_speech_llm(SpeechLLMSpec("voxtral", str(tm.tiny_voxtral(tmp_path / "v")), backbone="t"))
    backend.tokenizer.add_tokens(["[TEXTY]"], special_tokens=False)  # an added token is still not text
    backend._special_ids = None
    text_id = backend.tokenizer.convert_tokens_to_ids("a")  # a byte token of the regular vocabulary
    backend._lookup_special = lambda name: text_id
    with pytest.raises(InputError, match="ordinary text token"):
        backend.special_id("[INST]")


def _config(speech_settings: str, cascade_settings: str) -> Any:
    import tomllib

    from casceq.run.config import parse_config

    text = f"""
name = "pair"
[tasks.sst2]
n = 4
[[systems]]
name = "speech"
kind = "speech_llm"
model = "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"
settings = {speech_settings}
[[systems]]
name = "cascade"
kind = "cascade"
asr = "whisper-base"
llm = "hf:Qwen/Qwen-7B-Chat"
backbone = "qwen-7b"
settings = {cascade_settings}
"""
    return parse_config(tomllib.loads(text))


def test_a_pair_with_different_shots_is_refused_at_build_time() -> None:
    from casceq.run.build import build_system

    cfg = _config("{ batch_size = 2 }", "{ few_shot = 4, trust_remote_code = true }")
    with pytest.raises(InputError, match=r"'speech' shows 0 shots on sst2 but 'cascade'.* shows 4"):
        build_system(cfg.systems[0], cfg)
    same = _config("{ few_shot = { sst2 = 4 } }", "{ few_shot = 4 }")
    assert build_system(same.systems[0], same).backbone == "qwen-7b"  # nothing loaded: build is lazy


def test_the_demo_pairs_pass_the_shot_check() -> None:
    """The shipped speech LLM's recorded shots equal the demo cascades' settings: the demo still builds."""
    import tomllib

    from casceq.run.build import build_system
    from casceq.run.config import parse_config
    from casceq.run.demo import demo_config_toml

    cfg = parse_config(tomllib.loads(demo_config_toml()))
    speech = [s for s in cfg.systems if s.kind == "speech_llm"]
    assert speech and all(build_system(s, cfg).kind == "speech_llm" for s in speech)
