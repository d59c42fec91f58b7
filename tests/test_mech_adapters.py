"""Architecture adapters: layers, final norm, unembedding (+ soft-capping), audio positions and their frame rate.

Every model is a tiny random-weight instance of the real class, saved and loaded back through the real loader,
with a randomised final-norm weight so that applying the norm twice (or not at all) is visible.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from casceq.errors import InputError  # noqa: E402
from casceq.mech.adapters import PAPER_LAYERS_32, RULES, ModelLayout, default_layers, layout_of  # noqa: E402
from casceq.mech.capture import LayerTap  # noqa: E402
from tests import tiny_models as tm  # noqa: E402

SR = 16_000


def _randomise(norm: Any, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) * 2.0 + 0.3)
        if getattr(norm, "bias", None) is not None:
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))


def _clip(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _load(family: str, folder: Path) -> Any:
    from casceq.systems.speech_llm import SpeechLLMSpec, make_speech_llm

    if family == "ultravox-native":
        from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

        cfg = UltravoxNativeConfig(
            encoder=str(folder / "whisper"), backbone=str(folder / "lm"), backbone_name="tiny", hidden_dim=64
        )
        UltravoxNativeBackend.create(cfg, seed=3).save(folder / "projector")
        folder = folder / "projector"
    return make_speech_llm(SpeechLLMSpec(family, str(folder), backbone="tiny"))


BUILDERS = {
    "qwen2-audio": tm.tiny_qwen2_audio,
    "phi4-mm": tm.tiny_phi4_multimodal,
    "voxtral": tm.tiny_voxtral,
    "qwen2.5-omni": tm.tiny_qwen_omni_thinker,
    "ultravox-native": lambda d: (tm.tiny_whisper(d / "whisper"), tm.tiny_causal_lm(d / "lm"), d)[-1],
}
# Seconds per audio position each family's *own* code implies (checked against its token counts below).
EXPECTED_SECONDS = {
    "qwen2-audio": 0.04,
    "phi4-mm": 0.08,
    "voxtral": 0.08,
    "qwen2.5-omni": 0.04,
    "ultravox-native": 0.16,
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    b = _load(request.param, BUILDERS[request.param](folder))
    _randomise(layout_of(b).final_norm)
    return b


def _model_kwargs(b: Any, enc: Any) -> dict[str, Any]:
    if b.family == "ultravox-native":
        return {"inputs_embeds": b.embed(enc), "attention_mask": enc.attention_mask}
    return b._model_inputs(enc)


def test_paper_layers_and_fractions_of_depth() -> None:
    assert default_layers(32) == PAPER_LAYERS_32
    assert default_layers(6) == (0, 1, 2, 3, 4, 5, 6)  # Whisper base: every hidden state
    assert default_layers(4) == (0, 1, 2, 3, 4)  # tiny.en
    for n in (2, 12, 18, 28, 30, 40):
        got = default_layers(n)
        assert got[0] == 0 and max(got) <= n and list(got) == sorted(set(got))
        assert max(got) == math.floor(31 / 32 * n + 0.5)


def test_every_speech_family_has_a_rule() -> None:
    from casceq.systems.speech_llm.registry import SPEECH_LLM_FAMILIES

    local = set(SPEECH_LLM_FAMILIES) - {"gemini", "ultravox"}  # remote APIs expose no hidden states
    assert {f"speech:{f}" for f in local} <= set(RULES)


def test_speech_llm_layout_lens_equals_real_logits_and_norm_is_applied_once(backend: Any) -> None:
    lay = layout_of(backend)
    assert lay.key == f"speech:{backend.family}" and lay.kind == "decoder"
    assert lay.layers is backend.describe().layers and lay.final_norm is backend.describe().final_norm
    enc = backend.encode([_clip(1.0)], ["Transcribe."])
    n = lay.n_layers
    with LayerTap(lay, range(n + 1)) as tap, torch.inference_mode():
        out = backend.model(**_model_kwargs(backend, enc), output_hidden_states=True)
        raw_last = tap.states[n]
        lens, normed, double = lay.unembed(raw_last), lay.normed(raw_last), lay.unembed(out.hidden_states[-1])
    # The lens of the raw last layer is the model's real logits (norm once, unembedding, soft-capping).
    assert torch.allclose(lens, out.logits, atol=1e-4)
    # transformers' hidden_states[-1] already has the final norm: normalising it again is wrong.
    assert torch.allclose(out.hidden_states[-1], normed, atol=1e-5)
    assert not torch.allclose(double, out.logits, atol=1e-2)
    for i in range(n):  # every other hidden state is the raw residual stream the tap records
        assert torch.allclose(out.hidden_states[i], tap.states[i], atol=1e-5)


def test_audio_positions_and_their_frame_rate(backend: Any) -> None:
    lay = layout_of(backend)
    assert lay.seconds_per_position == pytest.approx(EXPECTED_SECONDS[backend.family])
    for seconds in (2.0, 3.2):
        _kwargs, n_audio = backend._audio_inputs([_clip(seconds)])
        enc = backend.encode([_clip(seconds)], ["x"])
        assert int((enc.input_ids == backend.audio_token_id).sum()) == n_audio[0]
        real = math.ceil(seconds / lay.seconds_per_position - 1e-6)
        if backend.family == "voxtral":
            assert n_audio[0] == 375  # a padded 30 s chunk; only the first `real` positions carry the clip
        else:
            assert abs(n_audio[0] - real) <= 1, (n_audio[0], real)


def test_gemma_soft_capping_is_applied_by_the_lens(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=0.5,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(cfg).save_pretrained(tmp_path / "g")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "g", dtype=torch.float32).eval()
    lay = layout_of(model)
    _randomise(lay.final_norm)
    assert lay.key == "Gemma3ForCausalLM" and lay.softcap == 0.5 and lay.seconds_per_position is None
    ids = torch.tensor([[5, 17, 99, 3, 250]])
    with LayerTap(lay, [lay.n_layers]) as tap, torch.inference_mode():
        logits = model(input_ids=ids).logits
        lens = lay.unembed(tap.states[lay.n_layers])
        uncapped = lay.lm_head(lay.normed(tap.states[lay.n_layers]))
    assert torch.allclose(lens, logits, atol=1e-5)
    assert uncapped.abs().max() > 0.6 and not torch.allclose(uncapped, logits, atol=1e-2)  # the cap bites


def test_whisper_encoder_layout(tmp_path: Path) -> None:
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = tm.tiny_whisper(tmp_path / "w")
    model = WhisperModel.from_pretrained(folder).eval()
    lay = layout_of(model)
    _randomise(lay.final_norm)
    assert (lay.key, lay.kind, lay.lm_head, lay.seconds_per_position) == (
        "WhisperModel",
        "encoder",
        None,
        0.02,
    )
    feats = WhisperFeatureExtractor.from_pretrained(folder)(_clip(1.0), sampling_rate=SR, return_tensors="pt")
    with LayerTap(lay, range(lay.n_layers + 1)) as tap, torch.inference_mode():
        out = model.encoder(feats["input_features"], output_hidden_states=True)
        normed = lay.normed(tap.states[lay.n_layers])
    assert torch.allclose(out.last_hidden_state, normed, atol=1e-5)
    assert not torch.allclose(out.last_hidden_state, tap.states[lay.n_layers], atol=1e-2)
    assert torch.allclose(out.hidden_states[0], tap.states[0], atol=1e-6)
    with pytest.raises(InputError, match="encoder"):
        lay.unembed(tap.states[0])


class _TupleLayer(torch.nn.Module):
    """A layer returning (state, extra) like transformers 4 layers do."""

    def __init__(self, tuple_out: bool) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.tuple_out = tuple_out

    def forward(self, hidden_states: Any) -> Any:
        h = self.lin(hidden_states) + hidden_states
        return (h, None) if self.tuple_out else h


@pytest.mark.parametrize("tuple_out", [True, False])
@pytest.mark.parametrize("as_kwarg", [True, False])
def test_tap_handles_tensor_and_tuple_outputs_and_kwarg_inputs(tuple_out: bool, as_kwarg: bool) -> None:
    torch.manual_seed(0)
    layers = torch.nn.ModuleList([_TupleLayer(tuple_out), _TupleLayer(tuple_out)])
    norm = torch.nn.LayerNorm(4)
    lay = ModelLayout("toy", "encoder", layers, layers, norm, None, None, 0.02, None, 2, 4)
    x = torch.randn(1, 3, 4)
    with LayerTap(lay, [0, 1, 2]) as tap:
        h = x
        for layer in layers:
            h = layer(hidden_states=h) if as_kwarg else layer(h)
            h = h[0] if isinstance(h, tuple) else h
    assert torch.equal(tap.states[0], x)
    assert torch.allclose(tap.states[2], h)
    assert isinstance(tap.states[1], torch.Tensor) and tap.states[1].shape == (1, 3, 4)
    assert not layers[0]._forward_hooks and not layers[0]._forward_pre_hooks  # hooks removed on exit


def test_unknown_architecture_and_bad_layers_are_clear_errors() -> None:
    with pytest.raises(InputError, match=r"no mechanistic adapter for 'Linear'.*supported"):
        layout_of(torch.nn.Linear(2, 2))
    lay = ModelLayout("toy", "encoder", None, [None] * 4, None, None, None, 0.02, 30.0, 4, 8)
    with pytest.raises(InputError, match=r"valid indices are 0\.\.4"):
        lay.check_layers([0, 5])
    assert lay.check_layers([3, 0, 3]) == (0, 3)
