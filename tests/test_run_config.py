import pytest

from casceq.errors import InputError
from casceq.run.build import backbone_of, build_system
from casceq.run.config import load_config

GOOD = """
name = "t"
seed = 3
voices = ["espeak-us"]
conditions = ["clean", "babble@5"]
[tasks.sst2]
n = 10
[tasks.agnews]
[[systems]]
name = "Cascade-S"
kind = "cascade"
asr = "faster-whisper:base"
llm = "gemma-3-270m"
[[systems]]
name = "Speech"
kind = "speech_llm"
model = "ultravox-native:/x"
backbone = "gemma-3-270m"
[[systems]]
name = "Text"
kind = "text"
llm = "gguf:/a/b/SmolLM2-135M-Instruct.Q4_1.gguf"
"""


def _write(tmp_path, text):
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


def test_good_config_roundtrip_and_hash(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert [t.name for t in cfg.tasks] == ["sst2", "ag_news"]  # alias resolved
    assert cfg.tasks[0].n == 10 and cfg.seed == 3
    assert cfg.conditions == ("clean", "babble@5")
    same = load_config(_write(tmp_path, GOOD))
    assert same.hash() == cfg.hash()
    other = load_config(_write(tmp_path, GOOD.replace("seed = 3", "seed = 4")))
    assert other.hash() != cfg.hash()


def test_matched_backbones_from_specs(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    systems = {s.name: build_system(s, cfg) for s in cfg.systems}
    assert systems["Cascade-S"].backbone == systems["Speech"].backbone == "gemma-3-270m"
    assert systems["Text"].backbone == "smollm2-135m-instruct"
    assert backbone_of("hf:Qwen/Qwen2-7B-Instruct") == "qwen2-7b-instruct"
    # A native Ultravox model draws its matched prompt's shots with the run's seed, as the cascade does.
    assert systems["Speech"].spec["settings"] == {"few_shot_seed": 3}
    assert systems["Cascade-S"].spec["settings"] == {}


@pytest.mark.parametrize(
    "edit, message",
    [
        (('kind = "cascade"', 'kind = "casc"'), "kind"),
        (('asr = "faster-whisper:base"', ""), "needs 'asr'"),
        (("[tasks.sst2]", "[tasks.nope]"), "nope"),
        (('"babble@5"', '"pink@5"'), "conditions"),
        (("seed = 3", "seed = 3\ncolour = 1"), "unknown top-level keys"),
        (('name = "Speech"', 'name = "Text"'), "duplicate system names"),
        (("n = 10", "n = -1"), "n must be positive"),
        (("n = 10", 'n = "ten"'), "'n' must be int"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, edit, message):
    p = _write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(InputError) as err:
        load_config(p)
    assert message in str(err.value) and str(p) in str(err.value)


def test_invalid_toml_names_file(tmp_path):
    p = _write(tmp_path, "name = [")
    with pytest.raises(InputError, match="invalid TOML"):
        load_config(p)


def test_demo_config_pairs_the_speech_llm_with_every_cascade_on_its_backbone() -> None:
    # The demo's point is the matched comparison: its speech LLM must resolve to the cascades' backbone id
    # (a mismatch would silently turn every speech-LLM pair into an unmatched one).
    import tomllib

    from casceq.run.build import _speech_backbone, backbone_of
    from casceq.run.config import parse_config
    from casceq.run.demo import demo_config_toml

    cfg = parse_config(tomllib.loads(demo_config_toml()))
    ids = {
        s.name: (_speech_backbone(s.model) if s.kind == "speech_llm" else backbone_of(s.llm))  # type: ignore[arg-type]
        for s in cfg.systems
    }
    assert set(ids) == {"Cascade-S", "Cascade-W", "Text", "Speech-LLM"}
    assert len(set(ids.values())) == 1
    # positive control: the mismatched offline LLM gives a different id
    assert backbone_of("smollm2-135m-instruct") != ids["Speech-LLM"]


def test_native_speech_llm_cache_key_follows_its_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "projector.safetensors").write_bytes(b"one")
    text = GOOD.replace('model = "ultravox-native:/x"', f'model = "ultravox-native:{folder}"')
    cfg = load_config(_write(tmp_path, text))
    spec = next(s for s in cfg.systems if s.name == "Speech")
    before = build_system(spec, cfg).cache_key()
    assert build_system(spec, cfg).cache_key() == before
    (folder / "projector.safetensors").write_bytes(b"two")  # retrained: same spec string, new weights
    assert build_system(spec, cfg).cache_key() != before
    cascade = next(s for s in cfg.systems if s.name == "Cascade-S")
    assert "weights" not in build_system(cascade, cfg).spec
