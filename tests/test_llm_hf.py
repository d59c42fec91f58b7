"""HFCausalLM guarantees on tiny random-weight Llama and Gemma 3 models loaded through the real loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from casceq.systems.llm.hf import HFCausalLM  # noqa: E402
from casceq.systems.llm.prompting import render  # noqa: E402

CORPUS = [
    "the film was good and the actors were great",
    "a bad movie with a dull plot",
    "yes no maybe answer text label",
    "sports business world science technology",
] * 20
CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROMPTS = [
    "Classify.\n\nText: the film was good\nAnswer:",
    "Classify.\n\nText: a bad movie with a dull plot and more words to make this one longer\nAnswer:",
    "Classify.\n\nText: great\nAnswer:",
    "Classify.\n\nText: the actors were great but the plot was dull\nAnswer:",
    "Classify.\n\nText: yes\nAnswer:",
]
SINGLE = ["yes", "no"]
MULTI = ["yes", "dull plot", "technology business"]


def _tokenizer(bos: bool, chat: bool) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    if chat:
        fast.chat_template = CHAT
    return fast


def _build(kind: str, folder: Path, window: int = 8) -> Path:
    torch.manual_seed(0)
    tok = _tokenizer(bos=kind == "gemma", chat=kind == "llama")
    common = {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    common |= {"num_attention_heads": 2, "num_key_value_heads": 1, "pad_token_id": 0, "eos_token_id": 2}
    # Large random weights: attention is sharp, so positions and padding visibly matter (0.02 hides them).
    common["initializer_range"] = 0.5
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, bos_token_id=1))
    else:
        # Soft-capping and a sliding window make the Gemma path differ from a plain unembedding.
        config = transformers.Gemma3TextConfig(
            **common,
            head_dim=16,
            final_logit_softcapping=2.0,
            sliding_window=window,
            layer_types=["sliding_attention", "full_attention"],
            bos_token_id=1,
        )
        model = transformers.Gemma3ForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


@pytest.fixture(scope="module", params=["llama", "gemma"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(request.param, tmp_path_factory.mktemp(request.param))


def _naive(llm: HFCausalLM, prompt: str, option: str) -> float:
    """Full forward of the unpadded context + option, full-vocabulary logits, sum of the option's log-probs."""
    ctx = render(llm.tokenizer, llm.format, prompt)
    ctx_ids = llm.tokenizer(ctx, add_special_tokens=not llm.format.chat)["input_ids"]
    whole = llm.tokenizer(ctx + llm.format.option_sep + option, add_special_tokens=not llm.format.chat)[
        "input_ids"
    ]
    assert whole[: len(ctx_ids)] == ctx_ids
    with torch.no_grad():
        logits = llm.model(input_ids=torch.tensor([whole])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return float(sum(lp[t - 1, whole[t]] for t in range(len(ctx_ids), len(whole))))


def test_format_follows_chat_template(tiny: Path) -> None:
    from casceq.systems.base import LLMBackend

    llm = HFCausalLM(str(tiny))
    assert isinstance(llm, LLMBackend)
    assert llm.format.chat == (tiny.name.startswith("llama"))
    assert llm.fast_unembed


@pytest.mark.parametrize("options", [SINGLE, MULTI])
def test_score_options_equals_naive_full_forward(tiny: Path, options: list[str]) -> None:
    llm = HFCausalLM(str(tiny), batch_size=3)
    scores = llm.score_options(PROMPTS, [options] * len(PROMPTS))
    ref = np.array([[_naive(llm, p, o) for o in options] for p in PROMPTS])
    np.testing.assert_allclose(scores, ref, atol=1e-4)
    assert scores.shape == (len(PROMPTS), len(options))
    assert np.all(scores < 0)


def test_multi_token_options_are_multi_token(tiny: Path) -> None:
    # Positive control for the test above: the multi-token case really has options of several tokens.
    llm = HFCausalLM(str(tiny))
    lengths = [len(llm.tokenizer(" " + o, add_special_tokens=False)["input_ids"]) for o in MULTI]
    assert max(lengths) >= 2


def test_batch_size_independence(tiny: Path) -> None:
    one = HFCausalLM(str(tiny), batch_size=1)
    eight = HFCausalLM(str(tiny), batch_size=8)
    opts = [MULTI] * len(PROMPTS)
    s1, s8 = one.score_options(PROMPTS, opts), eight.score_options(PROMPTS, opts)
    np.testing.assert_allclose(s1, s8, atol=1e-4)
    assert (s1.argmax(1) == s8.argmax(1)).all()
    assert one.generate(PROMPTS, 6) == eight.generate(PROMPTS, 6)


def test_padding_is_present_and_masked(tiny: Path) -> None:
    # Positive control: the batch above really pads (rows differ in length), and padding that were not masked
    # would change the scores of the short prompts. (RoPE is shift-invariant, so position ids alone would not.)
    llm = HFCausalLM(str(tiny), batch_size=8)
    rows = [llm._encode(llm.context(p)) for p in PROMPTS]
    assert len({len(r) for r in rows}) > 1
    ids, mask, pos = llm._batch(rows)
    with torch.no_grad():
        good = llm.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        unmasked = llm.model(input_ids=ids, position_ids=pos).logits[:, -1]
    assert not torch.allclose(good, unmasked, atol=1e-3)


def test_generate_matches_unbatched_greedy_loop(tiny: Path) -> None:
    llm = HFCausalLM(str(tiny), batch_size=4)
    got = llm.generate(PROMPTS[:3], 5, stop_at_newline=False)
    for prompt, answer in zip(PROMPTS[:3], got, strict=True):
        ids = llm._encode(llm.context(prompt))
        new: list[int] = []
        for _ in range(5):
            with torch.no_grad():
                nxt = int(llm.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == llm.tokenizer.eos_token_id:
                break
            new.append(nxt)
        assert answer == llm.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_bf16_autocast_close_to_float32(tiny: Path) -> None:
    a = HFCausalLM(str(tiny)).score_options(PROMPTS, [SINGLE] * len(PROMPTS))
    b = HFCausalLM(str(tiny), dtype="bfloat16-autocast").score_options(PROMPTS, [SINGLE] * len(PROMPTS))
    assert not np.array_equal(a, b)  # bf16 really ran
    np.testing.assert_allclose(a, b, rtol=0.1)  # sharp random weights: a few % drift, no more


def test_explicit_shots_enter_the_context(tiny: Path) -> None:
    llm = HFCausalLM(str(tiny))
    shots = [("Classify.\n\nText: good\nAnswer:", "yes")]
    ctx = llm.context(PROMPTS[0], shots)
    assert "Text: good" in ctx and ctx.count("Text:") == 2
    assert not np.allclose(
        llm.score_options(PROMPTS[:1], [SINGLE], shots=shots), llm.score_options(PROMPTS[:1], [SINGLE])
    )


def test_bad_arguments_are_refused(tiny: Path) -> None:
    llm = HFCausalLM(str(tiny))
    with pytest.raises(ValueError, match="same number"):
        llm.score_options(PROMPTS[:2], [SINGLE, MULTI])
    with pytest.raises(ValueError, match="prompts"):
        llm.score_options(PROMPTS[:2], [SINGLE])
    with pytest.raises(ValueError, match="dtype"):
        HFCausalLM(str(tiny), dtype="float16")  # type: ignore[arg-type]


SHOTS = [
    ("Classify.\n\nText: the film was good\nAnswer:", "yes"),
    ("Classify.\n\nText: a dull plot\nAnswer:", "no"),
]


@pytest.mark.parametrize("window", [None, 512])
def test_shared_prefix_cache_equals_naive(tmp_path: Path, window: int | None) -> None:
    # Llama (no window) and Gemma 3 with a window longer than the prompts: both share the shots' prefix.
    folder = _build("llama", tmp_path) if window is None else _build("gemma", tmp_path, window=window)
    shared = HFCausalLM(str(folder), batch_size=2)
    plain = HFCausalLM(str(folder), batch_size=2, share_prefix=False)
    rows = [shared._encode(shared.context(p, SHOTS)) for p in PROMPTS]
    assert shared._prefix_groups(rows, [1] * len(rows))[-1][1] >= 16  # the cached path is really taken
    a = shared.score_options(PROMPTS, [MULTI] * len(PROMPTS), shots=SHOTS)
    b = plain.score_options(PROMPTS, [MULTI] * len(PROMPTS), shots=SHOTS)
    np.testing.assert_allclose(a, b, atol=1e-4)
    ref = [[_naive_shots(plain, p, o, SHOTS) for o in MULTI] for p in PROMPTS[:2]]
    np.testing.assert_allclose(a[:2], ref, atol=1e-4)


def _naive_shots(llm: HFCausalLM, prompt: str, option: str, shots: list[tuple[str, str]]) -> float:
    ctx = render(llm.tokenizer, llm.format, prompt, shots)
    special = not llm.format.chat
    ctx_ids = llm.tokenizer(ctx, add_special_tokens=special)["input_ids"]
    whole = llm.tokenizer(ctx + llm.format.option_sep + option, add_special_tokens=special)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(llm.model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
    return float(sum(lp[t - 1, whole[t]] for t in range(len(ctx_ids), len(whole))))


def test_rows_longer_than_the_sliding_window_skip_the_shared_prefix(tmp_path: Path) -> None:
    llm = HFCausalLM(str(_build("gemma", tmp_path, window=70)), batch_size=2)
    rows = [llm._encode(llm.context(p, SHOTS)) for p in PROMPTS]
    groups = llm._prefix_groups(rows, [1] * len(rows))
    long = [i for i, r in enumerate(rows) if len(r) > 70]
    assert long and len(long) < len(rows)  # positive control: both kinds of row are present
    assert groups[0] == (long, 0) and groups[1][1] >= 16
    opts = [MULTI] * len(PROMPTS)
    a = llm.score_options(PROMPTS, opts, shots=SHOTS)
    llm.share_prefix = False
    np.testing.assert_allclose(a, llm.score_options(PROMPTS, opts, shots=SHOTS), atol=1e-4)
    ref = [[_naive_shots(llm, p, o, SHOTS) for o in MULTI] for p in PROMPTS]
    np.testing.assert_allclose(a, ref, atol=1e-4)
