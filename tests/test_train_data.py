"""The training split: no training text is ever an evaluation item, a few-shot shot or a calibration item."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from casceq.errors import InputError
from casceq.paths import datasets_dir
from casceq.train.config import TrainConfig, load_config


def _demo_tasks() -> list[str]:
    from casceq.run.demo import demo_config_toml

    return list(tomllib.loads(demo_config_toml())["tasks"])


def _evaluation_items(seeds: range, sizes: tuple[int, ...]) -> tuple[set[tuple[str, str]], set[str]]:
    """(task, id) pairs and texts the demo's tasks evaluate, shoot and calibrate on, for every seed and size."""
    from casceq.run.calibrate import heldout_examples
    from casceq.systems.llm.prompting import few_shot_examples
    from casceq.tasks import get_task, load_examples

    ids: set[tuple[str, str]] = set()
    texts: set[str] = set()
    for task in _demo_tasks():
        for seed in seeds:
            for n in sizes:
                items = load_examples(task, n=n, seed=seed)
                held = heldout_examples(task, items, 64, seed)
                ids |= {(ex.task, ex.id) for ex in [*items, *held]}
                texts |= {ex.text.strip() for ex in [*items, *held]}
            shots = few_shot_examples(get_task(task), k=4, seed=seed)
            body = [
                prompt.split("\n\n", 1)[1].split(": ", 1)[1].removesuffix("\nAnswer:") for prompt, _ in shots
            ]
            assert len(body) == 4
            texts |= {b.strip() for b in body}
    return ids, texts


def test_training_text_is_disjoint_from_demo_evaluation() -> None:
    if datasets_dir() is None:
        pytest.skip("../shared/datasets not found")
    from casceq.run.demo import DEMO_N
    from casceq.train.data import training_texts

    train = training_texts(TrainConfig())
    assert len(train) == TrainConfig().n_ag_news + TrainConfig().n_meld
    ids, texts = _evaluation_items(range(3), (DEMO_N, 200))
    assert not {(ex.task, ex.id) for ex in train} & ids
    assert not {ex.text.strip() for ex in train} & texts
    assert {ex.task for ex in train} == {"ag_news", "meld"}  # never SST-2 (its dev set is all there is)
    assert all(ex.meta["split"] == "train" for ex in train if ex.task == "meld")

    # Positive control: without the exclusion the same check finds evaluation items among the training text.
    unguarded = training_texts(TrainConfig(eval_seeds=()))
    assert {(ex.task, ex.id) for ex in unguarded} & ids


def test_voices_and_babble_plan_are_seeded_and_proportional() -> None:
    from casceq.train.data import assign_voices, babble_plan
    from casceq.types import Example

    exs = [Example(id=str(i), task="t", text=f"text {i}", label="x") for i in range(1000)]
    cfg = TrainConfig()
    split = assign_voices(exs, cfg)
    assert sum(len(v) for v in split.values()) == 1000
    assert len({e.id for v in split.values() for e in v}) == 1000  # one voice per text
    for voice, share in cfg.voices.items():
        assert abs(len(split[voice]) / 1000 - share / sum(cfg.voices.values())) < 0.002
    plan = babble_plan([e.id for e in exs], cfg)
    assert plan == babble_plan([e.id for e in exs], cfg)
    noisy = [s for s in plan.values() if s is not None]
    assert 0.25 < len(noisy) / 1000 < 0.35 and all(0.0 <= s <= 20.0 for s in noisy)


def test_config_file_refuses_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('steps = 7\ntasks = ["ag_news"]\n')
    cfg = load_config(good)
    assert cfg.steps == 7 and cfg.tasks == ("ag_news",)
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 7\n")
    with pytest.raises(InputError, match="stepz"):
        load_config(bad)
    with pytest.raises(InputError, match="encoder_mode"):
        TrainConfig(encoder_mode="streaming")
