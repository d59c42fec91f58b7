"""make_llm specs, resolve_llm, prompting and few-shot selection, and the vLLM adapter's bookkeeping."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from casceq.errors import InputError, MissingDependency
from casceq.paths import datasets_dir
from casceq.systems.llm import make_llm
from casceq.systems.llm.bundled import BUNDLED, DEFAULT_BACKBONE, DEFAULT_LLM_SETTINGS, resolve_llm
from casceq.systems.llm.prompting import PromptFormat, few_shot_examples, render, task_of_prompt
from casceq.tasks import get_task, load_examples


def test_bad_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown LLM spec"):
        make_llm("bogus:thing")
    with pytest.raises(InputError, match=r"openai:<model>@<base_url>"):
        make_llm("openai:gpt")
    with pytest.raises(InputError, match=r"\.gguf"):
        make_llm("gguf:/x/model.bin")
    with pytest.raises(InputError, match="unknown bundled"):
        make_llm("bundled:nope")
    with pytest.raises(InputError, match="not found"):
        resolve_llm(str(tmp_path / "missing.gguf"))
    with pytest.raises(InputError, match=r"config\.json"):
        resolve_llm(str(tmp_path))


def test_resolve_hub_ids_and_folders(tmp_path: Path) -> None:
    assert resolve_llm("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "smollm2-135m-instruct",
    )
    folder = tmp_path / "My-Model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_llm(str(folder)) == (str(folder.resolve()), "my-model")


def test_backbone_ids_match_the_runner_convention() -> None:
    from casceq.run.build import backbone_of

    for name, info in BUNDLED.items():
        assert backbone_of(name) == info.backbone
        assert backbone_of(f"hf:{info.hub_id}") == info.backbone
    assert DEFAULT_BACKBONE in BUNDLED
    assert set(DEFAULT_LLM_SETTINGS) >= {"sst2", "ag_news", "csqa"}


def test_vllm_missing_dependency_names_the_extra() -> None:
    if "vllm" in sys.modules or _importable("vllm"):
        pytest.skip("vllm is installed here")
    with pytest.raises(MissingDependency, match=r"casceq\[vllm\]"):
        make_llm("vllm:org/model")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_plain_render_writes_the_instruction_once() -> None:
    task = get_task("sst2")
    shots = [(task.prompt("great fun"), "positive"), (task.prompt("dull"), "negative")]
    text = render(None, PromptFormat(chat=False), task.prompt("it was ok"), shots)
    assert text.count(task.instruction) == 1
    assert text.endswith("Text: it was ok\nAnswer:")
    assert "Text: great fun\nAnswer: positive\n\nText: dull\nAnswer: negative" in text
    assert task_of_prompt(task.prompt("x")) is task
    assert task_of_prompt("Something else") is None


@pytest.mark.skipif(datasets_dir() is None, reason="../shared/datasets not found")
@pytest.mark.parametrize("name", ["sst2", "ag_news", "csqa"])
def test_few_shot_examples_are_outside_the_evaluated_items(name: str) -> None:
    task = get_task(name)
    evaluated = load_examples(name, n=300, seed=3)
    ids = {ex.id for ex in evaluated}
    shots = few_shot_examples(task, ids, k=4, seed=3)
    assert len(shots) == 4
    eval_prompts = {task.prompt(ex.text, ex) for ex in evaluated}
    assert not eval_prompts & {p for p, _ in shots}
    # Without the exclusion list they still come from the end of the seed's ranking: disjoint too.
    assert not eval_prompts & {p for p, _ in few_shot_examples(task, (), k=4, seed=3)}
    answers = [a for _, a in shots]
    assert len(set(answers)) == min(4, len(task.labels))  # label-balanced
    assert few_shot_examples(task, ids, k=4, seed=3) == shots  # deterministic


# ----- vLLM adapter: a vllm-shaped engine computing real log-probs with a tiny transformers model ------------


@dataclass
class _Params:
    max_tokens: int = 16
    temperature: float = 1.0
    prompt_logprobs: int | None = None


@dataclass
class _Logprob:
    logprob: float


class _Engine:
    """The parts of ``vllm.LLM`` the adapter uses (per vLLM's documented offline API), run on transformers."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        import transformers

        self.model = transformers.AutoModelForCausalLM.from_pretrained(model).eval()
        self.tok = transformers.AutoTokenizer.from_pretrained(model)
        self.kwargs = kwargs

    def get_tokenizer(self) -> Any:
        return self.tok

    def generate(self, requests: list[dict[str, Any]], params: _Params, use_tqdm: bool = True) -> list[Any]:
        import torch

        outs = []
        for req in requests:
            ids = list(req["prompt_token_ids"])
            with torch.no_grad():
                lp = torch.log_softmax(self.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
            plp = [None] + [{ids[t]: _Logprob(float(lp[t - 1, ids[t]]))} for t in range(1, len(ids))]
            new: list[int] = []
            for _ in range(params.max_tokens):
                with torch.no_grad():
                    nxt = int(self.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt == self.tok.eos_token_id:
                    break
                new.append(nxt)
            text = self.tok.decode(new, skip_special_tokens=True)
            outs.append(
                types.SimpleNamespace(prompt_logprobs=plp, outputs=[types.SimpleNamespace(text=text)])
            )
        return outs


def test_vllm_adapter_scores_like_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.systems.llm.vllm_llm import VLLMBackend
    from tests.test_llm_hf import MULTI, PROMPTS, SHOTS, _build

    folder = _build("llama", tmp_path)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=_Engine, SamplingParams=_Params))
    v = make_llm(f"vllm:{folder}", max_model_len=256)
    assert isinstance(v, VLLMBackend) and v.engine.kwargs["enable_prefix_caching"] is True
    hf = HFCausalLM(str(folder))
    opts = [MULTI] * 3
    np.testing.assert_allclose(
        v.score_options(PROMPTS[:3], opts), hf.score_options(PROMPTS[:3], opts), atol=1e-4
    )
    np.testing.assert_allclose(
        v.score_options(PROMPTS[:2], opts[:2], shots=SHOTS),
        hf.score_options(PROMPTS[:2], opts[:2], shots=SHOTS),
        atol=1e-4,
    )
    assert v.generate(PROMPTS[:2], 4, stop_at_newline=False) == hf.generate(
        PROMPTS[:2], 4, stop_at_newline=False
    )


@pytest.mark.skipif(datasets_dir() is None, reason="../shared/datasets not found")
def test_auto_shots_per_task_mapping() -> None:
    from casceq.systems.llm.prompting import AutoShots

    sst2, ag = get_task("sst2"), get_task("ag_news")
    auto = AutoShots({"sst2": 2}, seed=0)
    shots = auto(sst2.prompt("a fine film"))
    assert len(shots) == 2 and all(p.startswith(sst2.instruction) for p, _ in shots)
    assert auto(sst2.prompt("another")) is shots  # drawn once per task
    assert auto(ag.prompt("Stocks fell")) == ()
    assert auto("An unrelated prompt") == ()
    assert len(AutoShots(3)(ag.prompt("Stocks fell"))) == 3


def test_default_backend_kwargs_follow_the_settings() -> None:
    from casceq.systems.llm.bundled import LLMSettings, default_backend_kwargs

    kw = default_backend_kwargs()
    assert kw["few_shot"] == {t: s.few_shot for t, s in DEFAULT_LLM_SETTINGS.items()}
    assert default_backend_kwargs(["meld"])["few_shot"] == {"meld": LLMSettings().few_shot}
    for s in DEFAULT_LLM_SETTINGS.values():
        assert s.calibration in ("none", "content_free", "heldout")
