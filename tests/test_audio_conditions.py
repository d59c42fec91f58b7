"""casceq.audio.conditions: names, order-independent seeding, exact SNR, cache keys and files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from casceq.audio.babble import RecordedBabble
from casceq.audio.conditions import (
    PAPER_CONDITIONS,
    condition_audio,
    condition_path,
    item_rng,
    parse_condition,
    render,
)
from casceq.audio.io import load_audio, write_flac
from casceq.errors import InputError
from casceq.paths import datasets_dir
from casceq.types import AudioRef, Example

SR = 16_000


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean.astype(np.float64)
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RecordedBabble]:
    """A small recorded-babble source made of two synthetic noise files (no shared data needed)."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for i, rate in enumerate((16_000, 22_050)):
        sf.write(folder / f"babble_{i}.wav", 0.1 * rng.standard_normal(rate * 2), rate)
    return {"recorded": RecordedBabble.from_folder(folder)}


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    t = np.arange(int(1.3 * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "canonical", "snr", "source"),
    [
        ("clean", "clean", None, None),
        ("babble@10", "babble@10", 10.0, "recorded"),
        ("babble@5:recorded", "babble@5", 5.0, "recorded"),
        (" BABBLE@0 ", "babble@0", 0.0, "recorded"),
        ("babble@-5", "babble@-5", -5.0, "recorded"),
        ("babble@2.5:talkers", "babble@2.5:talkers", 2.5, "talkers"),
        ("babble@+15.0", "babble@15", 15.0, "recorded"),
    ],
)
def test_parse_condition(name: str, canonical: str, snr: float | None, source: str | None) -> None:
    c = parse_condition(name)
    assert (c.name, c.snr_db, c.source) == (canonical, snr, source)
    assert parse_condition(c.name) == c


@pytest.mark.parametrize("bad", ["noise@5", "babble@", "babble@x", "babble@5:musan", "babble5", "Clean!"])
def test_unknown_condition_lists_the_valid_ones(bad: str) -> None:
    with pytest.raises(InputError) as info:
        parse_condition(bad)
    msg = str(info.value)
    assert repr(bad) in msg and all(c in msg for c in PAPER_CONDITIONS) and ":talkers" in msg


def test_paper_conditions_parse() -> None:
    assert [parse_condition(c).snr_db for c in PAPER_CONDITIONS] == [None, 15, 10, 5, 0]


def test_render_hits_the_snr_and_is_independent_of_order(speech: np.ndarray, sources: dict) -> None:
    ids = [f"ex{i}" for i in range(6)]
    forward = {i: render("babble@5", speech, i, seed=7, sources=sources) for i in ids}
    backward = {i: render("babble@5", speech, i, seed=7, sources=sources) for i in reversed(ids)}
    for i in ids:
        np.testing.assert_array_equal(forward[i], backward[i])
        assert snr_db(speech, forward[i]) == pytest.approx(5.0, abs=0.01)
    # Different example, seed or condition: different noise (positive control for the equality above).
    assert not np.array_equal(forward["ex0"], forward["ex1"])
    assert not np.array_equal(forward["ex0"], render("babble@5", speech, "ex0", seed=8, sources=sources))
    noisier = render("babble@0", speech, "ex0", seed=7, sources=sources)
    assert snr_db(speech, noisier) == pytest.approx(0.0, abs=0.01)
    np.testing.assert_array_equal(render("clean", speech, "ex0", seed=7), speech)


def test_item_rng_depends_on_canonical_name_only() -> None:
    a = item_rng(1, "x", "babble@5").integers(1 << 30, size=4)
    b = item_rng(1, "x", "babble@5:recorded").integers(1 << 30, size=4)
    c = item_rng(1, "x", "babble@5:talkers").integers(1 << 30, size=4)
    assert (a == b).all() and not (a == c).all()


def test_render_cache_returns_identical_audio(speech: np.ndarray, sources: dict, tmp_path: Path) -> None:
    fresh = render("babble@10", speech, "e1", seed=0, sources=sources)
    first = render("babble@10", speech, "e1", seed=0, cache_dir=tmp_path, sources=sources)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1
    second = render("babble@10", speech, "e1", seed=0, cache_dir=tmp_path, sources=sources)
    np.testing.assert_array_equal(fresh, first)
    np.testing.assert_array_equal(first, second)
    render("babble@10", speech * 0.5, "e1", seed=0, cache_dir=tmp_path, sources=sources)
    assert len(list(tmp_path.rglob("*.npy"))) == 2  # other audio content: other key


def test_condition_path_writes_flac_and_sidecar_once(
    speech: np.ndarray, sources: dict, tmp_path: Path
) -> None:
    clean = write_flac(tmp_path / "clips" / "a.flac", speech, SR)
    assert condition_path(clean, "clean", example_id="a", seed=0, cache_dir=tmp_path) == clean
    out = condition_path(clean, "babble@5", example_id="a", seed=0, cache_dir=tmp_path / "c", sources=sources)
    assert out.suffix == ".flac" and "babble@5" in out.parts
    noisy = load_audio(out)
    assert snr_db(load_audio(clean), noisy) == pytest.approx(5.0, abs=0.05)  # after 16-bit storage
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["condition"]["snr_db"] == 5.0 and meta["seed"] == 0 and meta["example_id"] == "a"
    assert meta["measured_snr_db"] == pytest.approx(5.0, abs=1e-6)
    mtime = os.stat(out).st_mtime_ns
    again = condition_path(
        clean, "babble@5", example_id="a", seed=0, cache_dir=tmp_path / "c", sources=sources
    )
    assert again == out and os.stat(out).st_mtime_ns == mtime
    others = {
        condition_path(clean, "babble@5", example_id="a", seed=1, cache_dir=tmp_path / "c", sources=sources),
        condition_path(clean, "babble@0", example_id="a", seed=0, cache_dir=tmp_path / "c", sources=sources),
        condition_path(clean, "babble@5", example_id="b", seed=0, cache_dir=tmp_path / "c", sources=sources),
        condition_path(
            clean, "babble@5", example_id="a", seed=0, cache_dir=tmp_path / "c", sources=sources, speaker="3"
        ),
    }
    assert out not in others and len(others) == 4
    # The same bytes under another file name are the same variant (keyed by content, not path).
    copy = tmp_path / "copy.flac"
    copy.write_bytes(clean.read_bytes())
    assert (
        condition_path(copy, "babble@5", example_id="a", seed=0, cache_dir=tmp_path / "c", sources=sources)
        == out
    )


def test_condition_path_bad_audio_names_the_file(sources: dict, tmp_path: Path) -> None:
    silent = write_flac(tmp_path / "silent.flac", np.zeros(SR, dtype=np.float32), SR)
    with pytest.raises(InputError, match=r"silent\.flac \(example s1\): speech is silent"):
        condition_path(silent, "babble@5", example_id="s1", seed=0, cache_dir=tmp_path, sources=sources)
    broken = tmp_path / "broken.flac"
    broken.write_bytes(silent.read_bytes()[:200])
    with pytest.raises(InputError, match=r"broken\.flac"):
        condition_path(broken, "babble@5", example_id="s2", seed=0, cache_dir=tmp_path, sources=sources)
    assert not list(tmp_path.rglob("*.json"))


def test_default_sources_on_a_real_ravdess_clip(tmp_path: Path) -> None:
    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir() or not (root / "babble").is_dir():
        pytest.skip("shared datasets (ravdess, babble) not found")
    clip = root / "ravdess" / "Actor_02" / "03-01-03-01-01-01-02.flac"
    clean = load_audio(clip)
    for cond in ("babble@0", "babble@10:talkers"):
        out = condition_path(clip, cond, example_id="r1", seed=3, cache_dir=tmp_path, speaker="02")
        target = parse_condition(cond).snr_db
        assert snr_db(clean, load_audio(out)) == pytest.approx(target, abs=0.1)
        assert json.loads(out.with_suffix(".json").read_text())["speaker"] == "2"


def test_condition_audio_for_an_example(speech: np.ndarray, sources: dict, tmp_path: Path) -> None:
    clip = write_flac(tmp_path / "x.flac", speech, SR)
    ex = Example(
        id="r7",
        task="ravdess",
        text="Kids are talking by the door",
        label="angry",
        audio=AudioRef(path=str(clip), voice="natural"),
        meta={"actor": "03"},
    )
    assert condition_audio(ex, "clean", 0, tmp_path) is ex.audio
    ref = condition_audio(ex, "babble@5", 0, tmp_path, sources)
    assert ref.voice == "natural" and ref.sample_rate == SR and Path(ref.path).is_file()
    expected = condition_path(
        clip, "babble@5", example_id="r7", seed=0, cache_dir=tmp_path, speaker=3, sources=sources
    )
    assert Path(ref.path) == expected
    with pytest.raises(InputError, match="'t1' has no audio"):
        condition_audio(Example(id="t1", task="sst2", text="fine", label="positive"), "babble@5", 0, tmp_path)
