"""A reproduction that outlives its machine: segment records, the inference-code guard, pack and unpack."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from casceq.errors import InputError
from casceq.io.store import Store
from casceq.reproduce import state
from casceq.types import Prediction


def _pred(i: int, system: str = "S") -> Prediction:
    return Prediction(system, "sst2", "clean", f"ex{i}", "positive", "positive", "positive", correct=True)


def _folder(tmp_path: Path, rows: int = 3) -> Path:
    out = tmp_path / "repro"
    (out / "run" / "audio" / "sst2").mkdir(parents=True)
    (out / "plan.json").write_text(json.dumps({"hash": "h", "plan": {}}))
    (out / "run" / "config.json").write_text("{}")
    (out / "run" / "audio" / "sst2" / "clip.flac").write_bytes(b"x" * 1000)
    (out / "mech" / "captures" / "speech-sst2").mkdir(parents=True)
    (out / "mech" / "captures" / "speech-sst2" / "shard-0.states.npy").write_bytes(b"y" * 1000)
    (out / "mech" / "lens" / "mech").mkdir(parents=True)
    (out / "mech" / "lens" / "mech" / "lens.json").write_text('{"layers": []}')
    with Store(out / "run" / "store.sqlite") as st:
        st.register_run("reproduce", {"a": 1})
        st.write_batch("reproduce", [_pred(i) for i in range(rows)], [f"k{i}" for i in range(rows)])
    return out


def _add_rows(out: Path, start: int, n: int) -> None:
    with Store(out / "run" / "store.sqlite") as st:
        st.write_batch(
            "reproduce",
            [_pred(i) for i in range(start, start + n)],
            [f"k{i}" for i in range(start, start + n)],
        )


def test_segments_count_rows_of_finished_and_killed_starts(tmp_path: Path) -> None:
    out = _folder(tmp_path, rows=3)
    meta = {"command": "casceq reproduce --offline", "commit": "abc123", "machine": "x86_64 test"}
    first = state.start_segment(out, meta)
    _add_rows(out, 3, 4)
    state.end_segment(out, first, 12.5)
    second = state.start_segment(out, {**meta, "commit": "def456"})
    _add_rows(out, 7, 2)  # then the machine goes away: no end_segment
    state.start_segment(out, meta)
    segs = state.read_segments(out)
    assert [(s["rows_before"], s["rows_after"]) for s in segs] == [(3, 7), (7, 9), (9, 9)]
    assert [s.get("closed") for s in segs] == ["finished", "killed", None]
    assert segs[0]["seconds"] == 12.5 and segs[second]["seconds"] is not None  # to its newest row
    lines = state.segment_lines(segs)
    assert lines[0].startswith("- starts: 3 (2 wrote prediction rows; inference code identical")
    total = 12.5 + float(segs[1]["seconds"])  # the open third start has no time yet
    assert f"; {total:.0f} s in all (" in lines[0] and "1 start(s) untimed" in lines[0]
    assert lines[0].endswith("on 1 machine type(s): x86_64 test")
    assert "4 rows, 12 s" in lines[1] and "`def456`" in lines[2] and "until stopped" in lines[2]
    assert state.segment_lines(segs[:1]) == []  # one start: nothing to say


def test_rows_of_other_inference_code_are_refused_unless_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _folder(tmp_path, rows=0)
    idx = state.start_segment(out, {"commit": "a"})
    _add_rows(out, 0, 5)
    state.end_segment(out, idx, 1.0)
    state.start_segment(out, {"commit": "a"})  # same code: fine
    monkeypatch.setattr(state, "inference_digest", lambda package=None: "0000000000000000")
    with pytest.raises(InputError, match="other inference code"):
        state.start_segment(out, {"commit": "b"})
    assert len(state.read_segments(out)) == 2  # the refused start is not recorded
    state.start_segment(out, {"commit": "b"}, accept_code_change=True)
    segs = state.read_segments(out)
    assert segs[-1]["code_change_accepted"] is True
    _add_rows(out, 5, 1)
    state.start_segment(out, {"commit": "b"})  # the accepted version goes on; this closes its first start
    assert "DIFFERED: 2 digests" in state.segment_lines(state.read_segments(out))[0]


def test_inference_digest_follows_inference_code_only(tmp_path: Path) -> None:
    pkg = tmp_path / "casceq"
    for part in ("systems", "reproduce", "data"):
        (pkg / part).mkdir(parents=True)
    (pkg / "systems" / "a.py").write_text("x = 1\n")
    (pkg / "data" / "w.bin").write_bytes(b"\0" * 10)
    (pkg / "reproduce" / "r.py").write_text("y = 1\n")
    (pkg / "types.py").write_text("t = 1\n")
    d0 = state.inference_digest(pkg)
    (pkg / "reproduce" / "r.py").write_text("y = 2\n")  # claims and pages are not inference
    (pkg / "systems" / "__pycache__").mkdir()
    (pkg / "systems" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert state.inference_digest(pkg) == d0
    (pkg / "data" / "speech_llm_acoustic").mkdir()
    (pkg / "data" / "speech_llm_acoustic" / "projector.safetensors").write_bytes(b"\2")
    assert state.inference_digest(pkg) == d0  # a speech LLM's weights are in its rows' own cache keys
    (pkg / "data" / "w.bin").write_bytes(b"\0" * 9 + b"\1")  # other packaged data is not
    d1 = state.inference_digest(pkg)
    (pkg / "types.py").write_text("t = 2\n")
    assert len({d0, d1, state.inference_digest(pkg)}) == 3


def test_pack_then_unpack_keeps_the_state_and_leaves_out_recomputable_files(tmp_path: Path) -> None:
    out = _folder(tmp_path, rows=4)
    state.start_segment(out, {"commit": "a"})
    archive = tmp_path / "state.tar.gz"
    info = state.pack(out, archive)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {
        "plan.json",
        "run/config.json",
        "run/store.sqlite",
        "mech/lens/mech/lens.json",
        "segments.json",
    } <= names
    assert not any("audio" in n or "captures" in n for n in names)  # recomputed on demand
    assert info["files"] == len(names) - 1  # PACKED.json is the archive's own note
    back = tmp_path / "elsewhere"
    assert state.unpack(archive, back) == info["files"]
    with Store(back / "run" / "store.sqlite", read_only=True) as st:
        assert st.done("reproduce", "S", "sst2", "clean") == {f"ex{i}": f"k{i}" for i in range(4)}
    assert json.loads((back / "segments.json").read_text())[0]["commit"] == "a"
    with pytest.raises(InputError, match="new or empty"):
        state.unpack(archive, back)  # never over a folder with files


def test_a_packed_state_holds_no_links_and_unpacks(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    # the lens control's view of a capture: links to the capture's arrays (as written before 7 Dec 2026: absolute)
    view = out / "mech" / "lens" / "control-capture"
    view.mkdir()
    target = out / "mech" / "captures" / "speech-sst2" / "shard-0.states.npy"
    (view / "shard-0.states.npy").symlink_to(target.resolve())
    (view / "shard-0.jsonl").write_text("{}\n")
    (out / "mech" / "lens" / "elsewhere.json").symlink_to(out / "plan.json")  # any other link
    archive = tmp_path / "state.tar.gz"
    state.pack(out, archive)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert all(m.isfile() for m in members)
    assert not any("control-capture" in m.name or m.name.endswith("elsewhere.json") for m in members)
    assert (
        state.unpack(archive, tmp_path / "back") == len(members) - 1
    )  # PACKED.json is the archive's own note
    # positive control: an archive with such a link is what unpack refuses
    with tarfile.open(tmp_path / "linked.tar.gz", "w:gz") as tar:
        tar.add(out / "plan.json", arcname="plan.json")
        tar.add(view / "shard-0.states.npy", arcname="mech/lens/control-capture/shard-0.states.npy")
    with pytest.raises(InputError, match="unsafe member"):
        state.unpack(tmp_path / "linked.tar.gz", tmp_path / "refused")


def _archive(tmp_path: Path, members: list[tarfile.TarInfo]) -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        plan = tarfile.TarInfo("plan.json")
        plan.size = 2
        tar.addfile(plan, io.BytesIO(b"{}"))
        for m in members:
            tar.addfile(m, io.BytesIO(b"") if m.isfile() else None)
    return path


@pytest.mark.parametrize("kind", ["absolute", "parent", "symlink"])
def test_unpack_refuses_an_unsafe_archive_before_writing(tmp_path: Path, kind: str) -> None:
    if kind == "symlink":
        m = tarfile.TarInfo("run/store.sqlite")
        m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        m = tarfile.TarInfo("/tmp/evil" if kind == "absolute" else "../evil")
    with pytest.raises(InputError, match="unsafe member"):
        state.unpack(_archive(tmp_path, [m]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_refuses_what_is_not_a_reproduction(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(InputError, match="not a reproduction archive"):
        state.unpack(junk, tmp_path / "a")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("readme.txt"), io.BytesIO(b""))
    with pytest.raises(InputError, match=r"no plan\.json"):
        state.unpack(other, tmp_path / "b")
    with pytest.raises(InputError, match=r"no plan\.json"):
        state.pack(tmp_path, tmp_path / "x.tar.gz")


def test_unpack_refuses_a_truncated_archive_by_name(tmp_path: Path) -> None:
    out = _folder(tmp_path, rows=50)
    archive = tmp_path / "state.tar.gz"
    state.pack(out, archive)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.tar\.gz"):
        state.unpack(cut, tmp_path / "back")
