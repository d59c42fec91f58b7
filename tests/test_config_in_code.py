"""Experiment configs built in code: the same config, config.json and hash as the TOML the code wrote before.

``tests/data/configs/*.toml`` are the TOML texts ``demo_config_toml()``, ``experiment_toml(default_plan(subjects=()))`` and
``eval_config_toml()`` returned before the configs were built as objects; the hashes below are those the old
code's configs had. A run folder started by the old code (its ``config.json``) must resume with the new config.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from casceq.errors import CasceqError, InputError
from casceq.reproduce.plan import default_plan, experiment_config, experiment_toml
from casceq.run.config import ExperimentConfig, SystemSpec, TaskSpec, load_config, parse_config
from casceq.run.demo import demo_config, demo_config_toml
from casceq.run.runner import CONFIG_JSON, open_run_dir
from casceq.train.evaluate import eval_config, eval_config_toml

OLD = Path(__file__).parent / "data" / "configs"
CASES = {
    "demo.toml": (
        demo_config,
        demo_config_toml,
        "17fb6db2f2f1425b962e44a5955bbe22c2ea436a370f7376eb4b5e0274c0be11",
    ),
    "reproduce.toml": (
        lambda: experiment_config(default_plan(subjects=())),
        lambda: experiment_toml(default_plan(subjects=())),
        "5a4cdcc1338259dc5196565a1af3e49556c14332e57ae67fd24a6b96ad683c72",
    ),
    "evaluate.toml": (
        eval_config,
        eval_config_toml,
        "39e32bd7095091f6c9b301ce3f532eee4cbce4a0f04ee226af54121f647be597",
    ),
}


def _old(name: str) -> ExperimentConfig:
    return parse_config(tomllib.loads((OLD / name).read_text()), name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_built_in_code_is_the_old_toml_config(name: str) -> None:
    build, toml, old_hash = CASES[name]
    old, new = _old(name), build()
    assert new == old
    # the run folder's config.json holds this text: byte for byte the same (key order included)
    assert json.dumps(new.to_dict(), indent=2) == json.dumps(old.to_dict(), indent=2)
    assert new.hash() == old.hash() == old_hash
    assert parse_config(tomllib.loads(toml())) == old  # the TOML written at the edge reads back the same


def test_reproduce_toml_is_byte_identical() -> None:
    assert experiment_toml(default_plan(subjects=())) == (OLD / "reproduce.toml").read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_old_run_folder_resumes_with_the_config_built_in_code(name: str, tmp_path: Path) -> None:
    build, _, _ = CASES[name]
    out = tmp_path / "run"
    open_run_dir(_old(name), out)  # the folder as the old code started it
    written = (out / CONFIG_JSON).read_text()
    open_run_dir(build(), out)  # accepted: same hash
    assert (out / CONFIG_JSON).read_text() == written
    other = ExperimentConfig.build("demo", [SystemSpec.text("Text", "gemma-3-270m")], {"sst2": 3})
    with pytest.raises(CasceqError, match="different config"):
        open_run_dir(other, out)  # the check can fail


def test_to_toml_round_trips_every_field(tmp_path: Path) -> None:
    cfg = ExperimentConfig.build(
        "round-trip",
        [
            SystemSpec.cascade(
                'C "quoted"',
                "faster-whisper:base",
                "gemma-3-270m",
                backbone="gemma3",
                settings={"few_shot": {"sst2": 2}, "temperature": 0.5, "flag": True, "stop": ["\n", "x"]},
            ),
            SystemSpec("G", "text", llm="gemma-3-270m", answer_mode="generate"),
            SystemSpec.speech_llm("S", "ultravox-native:bundled", backbone="gemma-3-270m"),
        ],
        {"sst2": 5, "ag_news": None},
        seed=3,
        batch_size=2,
        answer_mode="score",
        calibration="content-free",
        calibration_n=7,
        bootstrap=11,
        voices=("espeak-us",),
        conditions=("clean", "babble@5"),
    )
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml("first line\nsecond line"))
    specs = ExperimentConfig.build(
        "t", cfg.systems, [TaskSpec("sst2", 4, split="train", data_dir="data/sst2")]
    )
    assert load_config(_written(tmp_path / "t.toml", specs.to_toml())) == specs
    assert path.read_text().startswith("# first line\n# second line\n")
    back = load_config(path)
    assert back == cfg and back.hash() == cfg.hash()


def test_build_validates_like_a_toml_file() -> None:
    with pytest.raises(InputError, match="no_such_task"):
        ExperimentConfig.build("x", [SystemSpec.text("T", "gemma-3-270m")], {"no_such_task": 3})
    with pytest.raises(InputError, match="duplicate"):
        ExperimentConfig.build("x", [SystemSpec.text("T", "a"), SystemSpec.text("T", "b")], {"sst2": 3})
    with pytest.raises(InputError, match="babble@x"):
        ExperimentConfig.build("x", [SystemSpec.text("T", "a")], {"sst2": 3}, conditions=("babble@x",))


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
