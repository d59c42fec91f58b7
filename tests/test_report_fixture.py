"""A realistic run folder for the report tests, written through the real Store, manifest and config types.

Four systems (a cascade and a speech LLM on one backbone, a cascade on another backbone, a text system), two
tasks (sst2, ag_news), one TTS voice, the paper's five conditions. Which items each system gets wrong is
constructed, so tests know the truth independently of the report code:

- accuracies are exact fractions (``ACC``); on sst2 the speech LLM beats its matched cascade on clean audio
  and loses at 0 dB (one reversal); ag_news keeps every ranking (no reversal);
- the matched pair shares many errors (same wrong label), the cascade's transcript is corrupted on a known
  set of items (``bad_transcripts``), one item writes "$5" spoken "five dollars" (a correct transcript).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from casceq.audio.tts.manifest import Manifest, ManifestEntry
from casceq.io.interchange import write_predictions
from casceq.io.store import Store
from casceq.run.config import ExperimentConfig, SystemSpec, TaskSpec
from casceq.types import INVALID, Prediction

CONDITIONS = ("clean", "babble@15", "babble@10", "babble@5", "babble@0")
LABELS = {"sst2": ("negative", "positive"), "ag_news": ("World", "Sports", "Business", "Sci/Tech")}
SYSTEMS = (
    SystemSpec(
        "cascade-gemma", "cascade", asr="faster-whisper:tiny.en", llm="gemma-3-270m", backbone="gemma3-270m"
    ),
    SystemSpec("speech-gemma", "speech_llm", model="ultravox-tiny", backbone="gemma3-270m"),
    SystemSpec(
        "cascade-smol", "cascade", asr="faster-whisper:tiny.en", llm="smollm2-135m", backbone="smollm2-135m"
    ),
    SystemSpec("text-gemma", "text", llm="gemma-3-270m", backbone="gemma3-270m"),
)
VOICE = "piper-joe"
N = 40
# Correct answers out of N per (system, task) at each SNR: clean, 15, 10, 5, 0.
ACC = {
    ("cascade-gemma", "sst2"): (32, 31, 30, 29, 28),
    ("speech-gemma", "sst2"): (36, 33, 28, 24, 20),
    ("cascade-smol", "sst2"): (28, 27, 24, 21, 18),
    ("text-gemma", "sst2"): (38,) * 5,
    ("cascade-gemma", "ag_news"): (34, 33, 32, 31, 30),
    ("speech-gemma", "ag_news"): (32, 30, 28, 26, 24),
    ("cascade-smol", "ag_news"): (28, 26, 24, 22, 20),
    ("text-gemma", "ag_news"): (36,) * 5,
}
SECONDS = {"cascade-gemma": 0.5, "speech-gemma": 0.3, "cascade-smol": 0.4, "text-gemma": 0.05}
WORDS = [
    "the",
    "movie",
    "was",
    "a",
    "quiet",
    "triumph",
    "of",
    "small",
    "gestures",
    "and",
    "honest",
    "acting",
    "in",
    "every",
    "scene",
]


@dataclass
class Fixture:
    """The run folder and the constructed truth."""

    root: Path
    predictions: list[Prediction] = field(default_factory=list)
    texts: dict[tuple[str, str], str] = field(default_factory=dict)
    bad_transcripts: set[tuple[str, str, str, str]] = field(default_factory=set)  # (system, task, cond, id)
    durations: dict[tuple[str, str], float] = field(default_factory=dict)


def _text(task: str, i: int) -> str:
    if i == 0:
        return "Shares rose 5% after it cost $5 to buy."
    words = [WORDS[(i * 7 + k) % len(WORDS)] for k in range(4 + i % 5)]
    return f"{task.upper()} item {i}: " + " ".join(words) + "."


def _wrong(task: str, gold: str, rng: np.random.Generator, shared: str | None) -> str:
    if shared is not None and rng.random() < 0.8:
        return shared
    if rng.random() < 0.1:
        return INVALID
    return str(rng.choice([x for x in LABELS[task] if x != gold]))


def make_run(
    root: Path,
    *,
    systems: tuple[SystemSpec, ...] = SYSTEMS,
    acc: dict | None = None,
    conditions: tuple[str, ...] = CONDITIONS,
    n: int = N,
    seed: int = 0,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> Fixture:
    """Write the run folder (config.json, store.sqlite, predictions.jsonl, audio/<task>/ manifests)."""
    acc = {**ACC, **(acc or {})}
    rng = np.random.default_rng(seed)
    cfg = ExperimentConfig(
        name="fixture",
        systems=systems,
        tasks=(TaskSpec("sst2", n), TaskSpec("ag_news", n)),
        voices=(VOICE,),
        conditions=conditions,
        bootstrap=200,
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"hash": cfg.hash(), "config": cfg.to_dict()}))
    fx = Fixture(root)
    for task in LABELS:
        adir = root / "audio" / task
        entries = []
        for i in range(n):
            eid = f"{task}-{i:04d}"
            text = _text(task, i)
            dur = 0.5 + 0.05 * (i % 10)
            wav = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * dur)) / 16000)).astype(np.float32)
            rel = f"{VOICE}/{eid}.flac"
            (adir / VOICE).mkdir(parents=True, exist_ok=True)
            sf.write(adir / rel, wav, 16000, subtype="PCM_16")
            spoken = text.replace("5%", "5 percent") if i == 0 else text
            entries.append(ManifestEntry(eid, task, VOICE, rel, dur, 16000, text, spoken, "0" * 64))
            fx.texts[(task, eid)] = text
            fx.durations[(task, f"{eid}@{VOICE}")] = dur
        Manifest(adir, tuple(entries)).write()
    with Store(root / "store.sqlite") as store:
        store.register_run(cfg.name, cfg.to_dict(), cfg.hash())
        for s in systems:
            store.register_system(cfg.name, s.name, s.backbone, s.kind, {})
        for task, labels in LABELS.items():
            golds = [labels[(i * 3 + i // 2) % len(labels)] for i in range(n)]
            for ci, cond in enumerate(conditions):
                snr_i = CONDITIONS.index(cond)
                order = rng.permutation(n)  # items in wrongness order, shared by all systems: errors overlap
                shared = {int(j): _wrong(task, golds[j], rng, None) for j in order}
                rows = []
                for s in systems:
                    if (s.name, cond) in skip:  # a system that never ran under this condition
                        continue
                    k = acc[(s.name, task)][snr_i] * n // N
                    wrong = set(order[: n - k].tolist()) if s.kind != "text" else set(range(n - k))
                    for i in range(n):
                        eid = f"{task}-{i:04d}@{VOICE}"
                        gold = golds[i]
                        label = gold if i not in wrong else _wrong(task, gold, rng, shared[i])
                        transcript = None
                        if s.kind == "cascade":
                            text = fx.texts[(task, eid.split("@")[0])]
                            transcript = text.lower().replace("$5", "five dollars")
                            if i % 3 == 0 and i > 0 and (ci > 0 or i % 2 == 0):
                                transcript = transcript.replace("item", "atom")
                                fx.bad_transcripts.add((s.name, task, cond, eid))
                        rows.append(
                            Prediction(
                                s.name,
                                task,
                                cond,
                                eid,
                                output=f"Answer: {label}",
                                label=label,
                                gold=gold,
                                transcript=transcript,
                                seconds=SECONDS[s.name],
                                backbone=s.backbone,
                                correct=label == gold,
                            )
                        )
                store.write_batch(cfg.name, rows, [f"k{j}" for j in range(len(rows))])
                fx.predictions += rows
        write_predictions(root / "predictions.jsonl", store.predictions(run=cfg.name))
    return fx


def test_fixture_round_trips_through_the_store(tmp_path: Path) -> None:
    fx = make_run(tmp_path / "run")
    with Store(fx.root / "store.sqlite", read_only=True) as store:
        back = store.predictions(run="fixture")
    assert back == fx.predictions
    got = {(p.system, p.task, p.condition): 0 for p in back}
    for p in back:
        got[(p.system, p.task, p.condition)] += p.correct
    assert got[("speech-gemma", "sst2", "clean")] == 36
    assert got[("cascade-gemma", "sst2", "babble@0")] == 28
    assert Manifest.load(fx.root / "audio" / "sst2").entries[0].voice == VOICE
