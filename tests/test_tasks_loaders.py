"""Loaders against the real official files: counts, label balance, ids, subsampling, audio headers, bad input."""

from __future__ import annotations

import collections
import csv
import hashlib
import json
import shutil
import wave
from pathlib import Path

import pytest

from casceq.errors import InputError
from casceq.paths import datasets_dir
from casceq.tasks import load_examples, subsample
from casceq.tasks.parsing import alias_match, normalize_answer
from casceq.types import Example

ROOT = datasets_dir()
needs_data = pytest.mark.skipif(
    ROOT is None or not (ROOT / "sst2").is_dir(), reason="../shared/datasets not found"
)


def _counts(examples: list[Example]) -> dict[str, int]:
    return dict(collections.Counter(e.label for e in examples))


@needs_data
@pytest.mark.parametrize(
    ("name", "total", "counts"),
    [
        ("ag_news", 7600, {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}),
        ("sst2", 872, {"positive": 444, "negative": 428}),
        ("csqa", 1221, {"A": 239, "B": 255, "C": 241, "D": 251, "E": 235}),
        ("triviaqa", 3000, None),
        (
            "meld",
            2610,
            {
                "neutral": 1256,
                "joy": 402,
                "anger": 345,
                "surprise": 281,
                "sadness": 208,
                "disgust": 68,
                "fear": 50,
            },
        ),
        ("mustard", 690, {"sarcastic": 345, "not sarcastic": 345}),
        (
            "ravdess",
            1440,
            {
                "neutral": 96,
                **{k: 192 for k in ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")},
            },
        ),
    ],
)
def test_real_files_counts_and_unique_ids(name: str, total: int, counts: dict[str, int] | None) -> None:
    examples = load_examples(name)
    assert len(examples) == total
    assert len({e.id for e in examples}) == total
    assert all(e.task == name and e.text.strip() == e.text and e.text for e in examples)
    if counts is not None:
        assert _counts(examples) == counts


@needs_data
def test_meld_other_splits() -> None:
    assert len(load_examples("meld", split="dev")) == 1109
    assert len(load_examples("meld", split="train")) == 9989
    with pytest.raises(InputError, match="unknown split"):
        load_examples("meld", split="validation")


@needs_data
def test_text_tasks_match_an_independent_pandas_read() -> None:
    pd = pytest.importorskip("pandas")
    assert ROOT is not None
    sst = pd.read_csv(ROOT / "sst2" / "dev.tsv", sep="\t", quoting=csv.QUOTE_NONE)
    ours = load_examples("sst2")
    assert [e.text for e in ours] == [s.strip() for s in sst["sentence"]]
    assert [e.label == "positive" for e in ours] == list(sst["label"] == 1)
    ag = pd.read_csv(ROOT / "ag_news" / "test.csv", header=None, names=["c", "t", "d"])
    ag_ours = load_examples("ag_news")
    assert ag_ours[42].id == "ag_news-test-000042"
    assert ag_ours[42].text == f"{ag['t'][42].strip()}. {ag['d'][42].strip()}"
    classes = ["World", "Sports", "Business", "Sci/Tech"]
    assert [e.label for e in ag_ours] == [classes[c - 1] for c in ag["c"]]
    meld = pd.read_csv(ROOT / "meld" / "test_sent_emo.csv", encoding="utf-8")
    meld_ours = load_examples("meld")
    assert [e.id for e in meld_ours] == [
        f"dia{d}_utt{u}" for d, u in zip(meld["Dialogue_ID"], meld["Utterance_ID"], strict=True)
    ]
    assert [e.text for e in meld_ours] == [u.strip() for u in meld["Utterance"]]
    assert any("’" in e.text for e in meld_ours)  # curly quotes survive as released


@needs_data
def test_known_items_and_fields() -> None:
    csqa = load_examples("csqa")
    first = csqa[0]
    assert first.id == "1afa02df02c908a558b4036e80242fac"
    assert first.choices == ("bank", "library", "department store", "mall", "new york")
    assert first.label == "A" and first.text.endswith("at a what?")
    sst = load_examples("sst2")
    assert sst[0].id == "sst2-dev-000000" and sst[0].text == "it 's a charming and often affecting journey ."
    mustard = {e.id: e for e in load_examples("mustard")}
    assert mustard["1_60"].label == "sarcastic" and mustard["1_60"].meta["speaker"] == "SHELDON"
    assert len(mustard["1_60"].meta["context"]) == 2 and mustard["1_60"].meta["show"] == "BBT"


@needs_data
def test_triviaqa_questions_unwrapped_and_self_consistent() -> None:
    trivia = load_examples("triviaqa")
    assert trivia[0].text == "Brunswick, Lancastrian and Pearl Pickler are types of which vegetable?"
    assert not any(e.text.startswith("Question:") or e.text.endswith("Answer:") for e in trivia)
    # Positive control: every gold answer matches its own aliases; a shifted answer almost never does.
    # (One gold answer in the file is "(a", which the official normalisation reduces to nothing.)
    scorable = [e for e in trivia if normalize_answer(e.label)]
    assert len(scorable) == len(trivia) - 1
    assert all(alias_match(e.label, e.meta["aliases"]) for e in scorable)
    shifted = sum(alias_match(trivia[i - 1].label, e.meta["aliases"]) for i, e in enumerate(trivia))
    assert shifted < 10
    unquoted = [e for e in trivia if e.meta["raw_question"] != e.text]
    assert 150 < len(unquoted) < 250
    sou = next(e for e in trivia if "sou-wester" in e.text)
    assert sou.text == 'What type of clothing is a "sou-wester"?'


@needs_data
def test_ravdess_fields_and_audio_headers() -> None:
    sf = pytest.importorskip("soundfile")
    rav = load_examples("ravdess")
    assert len({e.meta["actor"] for e in rav}) == 24
    assert collections.Counter(e.meta["actor"] for e in rav) == {a: 60 for a in range(1, 25)}
    assert {e.text for e in rav} == {"Kids are talking by the door", "Dogs are sitting by the door"}
    for e in rav[::97]:
        assert e.audio is not None and e.audio.voice == "natural"
        fields = e.id.split("-")
        assert e.meta["sex"] == ("male" if int(fields[6]) % 2 else "female")
        assert e.meta["intensity"] == ("strong" if fields[3] == "02" else "normal")
        assert e.text.startswith("Kids" if fields[4] == "01" else "Dogs")
        info = sf.info(e.audio.path)  # independent reference for the stdlib FLAC header reader
        assert e.audio.sample_rate == info.samplerate == 16000
        assert e.audio.duration == pytest.approx(info.duration, abs=1e-6)


@needs_data
@pytest.mark.parametrize("name", ["sst2", "meld", "ravdess"])
def test_subsampling_is_deterministic_nested_and_in_file_order(name: str) -> None:
    full = load_examples(name)
    a = load_examples(name, n=50, seed=0)
    b = load_examples(name, n=50, seed=0)
    c = load_examples(name, n=50, seed=1)
    big = load_examples(name, n=100, seed=0)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 50
    assert {e.id for e in a} != {e.id for e in c}
    assert {e.id for e in a} <= {e.id for e in big}
    position = {e.id: i for i, e in enumerate(full)}
    assert [position[e.id] for e in a] == sorted(position[e.id] for e in a)
    # Independent statement of the rule: the 50 lowest sha256("seed:id") digests.
    expected = sorted(full, key=lambda e: hashlib.sha256(f"0:{e.id}".encode()).hexdigest())[:50]
    assert {e.id for e in a} == {e.id for e in expected}


def test_subsample_edge_cases() -> None:
    exs = [Example(f"x{i}", "sst2", "t", "positive") for i in range(5)]
    assert subsample(exs, None) == exs and subsample(exs, 10) == exs and subsample(exs, 0) == []
    with pytest.raises(InputError):
        subsample(exs, -1)


# ---- bad input: missing folders and files, malformed rows named by file and line ----


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_examples("sst2", data_dir=tmp_path / "nope")
    with pytest.raises(InputError, match=r"dev\.tsv"):
        load_examples("sst2", data_dir=tmp_path)
    with pytest.raises(InputError, match="Actor_01"):
        load_examples("ravdess", data_dir=tmp_path)


def test_no_datasets_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("casceq.paths.datasets_dir", lambda: None)
    with pytest.raises(InputError, match="CASCEQ_DATASETS"):
        load_examples("sst2")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


CLASSES = "World\nSports\nBusiness\nSci/Tech\n"
CSQA_OK = json.dumps(
    {
        "answerKey": "A",
        "id": "q1",
        "question": {"stem": "S?", "choices": [{"label": x, "text": x.lower()} for x in "ABCDE"]},
    }
)
MELD_HEAD = (
    "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
)


@pytest.mark.parametrize(
    ("name", "files", "bad_file", "line"),
    [
        ("sst2", {"dev.tsv": "sentence\tlabel\ngood .\t1\nbad .\t2\n"}, "dev.tsv", 3),
        ("sst2", {"dev.tsv": "sentence\tlabel\ngood .\t1\nno label here\n"}, "dev.tsv", 3),
        ("sst2", {"dev.tsv": "index\tsentence\n0\tgood .\n"}, "dev.tsv", 1),
        (
            "ag_news",
            {"classes.txt": CLASSES, "test.csv": '"1","t","d"\n"1","t","d"\n"7","t","d"\n'},
            "test.csv",
            3,
        ),
        ("ag_news", {"classes.txt": CLASSES, "test.csv": '"2","only two"\n'}, "test.csv", 1),
        ("csqa", {"dev_rand_split.jsonl": CSQA_OK + "\n{not json\n"}, "dev_rand_split.jsonl", 2),
        (
            "csqa",
            {"dev_rand_split.jsonl": CSQA_OK + "\n" + CSQA_OK.replace('"A", "id"', '"F", "id"') + "\n"},
            "dev_rand_split.jsonl",
            2,
        ),
        (
            "csqa",
            {"dev_rand_split.jsonl": "\n" + CSQA_OK.replace('"label": "E"', '"label": "D"') + "\n"},
            "dev_rand_split.jsonl",
            2,
        ),
        (
            "triviaqa",
            {
                "triviaqa_sm_sub.jsonl": '{"context": "Question: Q?\\nAnswer:", "answer": "A", "aliases": ["A"]}\n{"answer": "B", "aliases": []}\n'
            },
            "triviaqa_sm_sub.jsonl",
            2,
        ),
        (
            "meld",
            {
                "test_sent_emo.csv": MELD_HEAD
                + '1,Hi.,Joey,joy,positive,0,0,1,1,"0:1,0","0:2,0"\n2,Ho.,Joey,happy,positive,0,1,1,1,a,b\n'
            },
            "test_sent_emo.csv",
            3,
        ),
        ("meld", {"test_sent_emo.csv": "Sr No.,Utterance,Speaker\n1,Hi.,Joey\n"}, "test_sent_emo.csv", 1),
        (
            "mustard",
            {
                "sarcasm_data.json": '{\n  "1_1": {"utterance": "x", "sarcasm": true},\n  "1_2": {"utterance": "y"}\n}\n'
            },
            "sarcasm_data.json",
            3,
        ),
        (
            "mustard",
            {"sarcasm_data.json": '{\n  "1_1": {"utterance": "x", "sarcasm": true},,\n}\n'},
            "sarcasm_data.json",
            2,
        ),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, name: str, files: dict[str, str], bad_file: str, line: int
) -> None:
    for fname, text in files.items():
        _write(tmp_path / fname, text)
    with pytest.raises(InputError) as err:
        load_examples(name, data_dir=tmp_path)
    assert f"{tmp_path / bad_file}:{line}:" in str(err.value)
    assert err.value.path == str(tmp_path / bad_file) and err.value.line == line


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = "1,Hi.,Joey,joy,positive,0,0,1,1,a,b\n"
    _write(tmp_path / "test_sent_emo.csv", MELD_HEAD + row + row)
    with pytest.raises(InputError, match="duplicate example id 'dia0_utt0'"):
        load_examples("meld", data_dir=tmp_path)


def test_ag_news_wrong_classes(tmp_path: Path) -> None:
    _write(tmp_path / "classes.txt", "A\nB\n")
    _write(tmp_path / "test.csv", '"1","t","d"\n')
    with pytest.raises(InputError, match="classes"):
        load_examples("ag_news", data_dir=tmp_path)


def test_ravdess_bad_file_name_and_song_skipped(tmp_path: Path) -> None:
    actor = tmp_path / "Actor_01"
    _tiny_wav(actor / "03-01-05-02-01-01-01.wav", 48000)
    _tiny_wav(actor / "03-02-05-02-01-01-01.wav", 48000)  # song: not speech
    exs = load_examples("ravdess", data_dir=tmp_path)
    assert [e.label for e in exs] == ["angry"] and exs[0].audio is not None
    assert exs[0].audio.sample_rate == 48000 and exs[0].audio.duration == pytest.approx(0.1)
    assert exs[0].meta["intensity"] == "strong" and exs[0].meta["sex"] == "male"
    _tiny_wav(actor / "03-01-5-02-01-01-01.wav", 48000)
    with pytest.raises(InputError, match=r"03-01-5-02"):
        load_examples("ravdess", data_dir=tmp_path)


def _tiny_wav(path: Path, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * (rate // 10))


def test_meld_and_mustard_official_audio_layouts(tmp_path: Path) -> None:
    _write(
        tmp_path / "meld" / "test_sent_emo.csv",
        MELD_HEAD + "1,Hi.,Joey,joy,positive,3,2,1,1,a,b\n2,Ho.,Joey,fear,negative,3,3,1,1,a,b\n",
    )
    _tiny_wav(tmp_path / "meld" / "output_repeated_splits_test" / "dia3_utt2.wav", 16000)
    meld = load_examples("meld", data_dir=tmp_path / "meld")
    assert [e.id for e in meld] == ["dia3_utt2", "dia3_utt3"]
    assert (
        meld[0].audio is not None and meld[0].audio.sample_rate == 16000 and meld[0].audio.voice == "natural"
    )
    assert meld[1].audio is None
    _write(
        tmp_path / "mustard" / "sarcasm_data.json",
        json.dumps({"2_5": {"utterance": "Sure.", "sarcasm": False}}),
    )
    _tiny_wav(tmp_path / "mustard" / "utterances_final" / "2_5.wav", 22050)
    mus = load_examples("mustard", data_dir=tmp_path / "mustard")
    assert mus[0].label == "not sarcastic" and mus[0].audio is not None and mus[0].audio.sample_rate == 22050


@needs_data
def test_copy_of_real_folder_loads_identically(tmp_path: Path) -> None:
    assert ROOT is not None
    shutil.copytree(ROOT / "csqa", tmp_path / "csqa")
    assert load_examples("csqa", data_dir=tmp_path / "csqa") == load_examples("csqa")
    assert load_examples("csqa", data_dir=tmp_path, n=5) == load_examples("csqa", n=5)  # a datasets root


@pytest.mark.parametrize(
    ("rate", "seconds", "channels"), [(44100, 0.25, 1), (22050, 1.5, 2), (8000, 0.01, 1)]
)
def test_audio_header_agrees_with_soundfile(tmp_path: Path, rate: int, seconds: float, channels: int) -> None:
    sf = pytest.importorskip("soundfile")
    np = pytest.importorskip("numpy")
    from casceq.tasks._audio_header import audio_header

    data = np.zeros((int(rate * seconds), channels), dtype="float32")
    for ext in ("flac", "wav"):
        path = tmp_path / f"x.{ext}"
        sf.write(path, data, rate, subtype="PCM_16")
        info = sf.info(path)
        got_rate, got_duration = audio_header(path)
        assert got_rate == info.samplerate == rate
        assert got_duration == pytest.approx(info.duration, abs=1e-9)
    (tmp_path / "junk.flac").write_bytes(b"not audio at all, just some bytes here....")
    assert audio_header(tmp_path / "junk.flac") == (None, None)
    assert audio_header(tmp_path / "missing.wav") == (None, None)
