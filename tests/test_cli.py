import json
import subprocess
import sys

from casceq.cli import COMMANDS, build_parser


def test_help_is_fast_and_imports_no_heavy_package():
    code = (
        "import sys, time; t=time.perf_counter(); from casceq.cli import build_parser; "
        "p = build_parser(); p.format_help(); [a.choices[c].format_help() for a in p._subparsers._group_actions for c in a.choices]; "
        "print(time.perf_counter()-t); "
        "print(sorted(m for m in ('torch','transformers','numpy','faster_whisper','scipy','soundfile','jiwer','datasets','pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert float(out[0]) < 0.5
    assert out[1] == "[]"


def test_top_level_help_prints():
    """``casceq --help`` formats every command's one-line help (a bare '%' in one broke it)."""
    r = subprocess.run([sys.executable, "-m", "casceq.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "power" in r.stdout and "80%" in r.stdout


def test_every_listed_command_builds():
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions)
    present = set(sub.choices)
    # the foundation's commands must exist
    assert {"tasks", "compare", "import", "export", "run", "demo", "synth"} <= present
    assert present <= {c for c, _, _ in COMMANDS}


def test_unknown_command_exits_nonzero():
    r = subprocess.run([sys.executable, "-m", "casceq.cli", "frobnicate"], capture_output=True, text=True)
    assert r.returncode != 0 and "invalid choice" in r.stderr


def test_tasks_json_schema():
    r = subprocess.run(
        [sys.executable, "-m", "casceq.cli", "tasks", "--json"], capture_output=True, text=True, check=True
    )
    data = json.loads(r.stdout)
    names = {t["name"] for t in data["tasks"]}
    assert {"ag_news", "sst2", "csqa", "triviaqa", "meld", "mustard", "ravdess"} <= names
    for t in data["tasks"]:
        assert set(t) == {"name", "labels", "text_sufficient", "open_answer"}


def test_datasets_are_found_from_any_working_directory(tmp_path):
    from casceq.paths import datasets_dir

    here = datasets_dir()
    if here is None:
        import pytest

        pytest.skip("../shared/datasets not found")
    code = "from casceq.paths import datasets_dir; print(datasets_dir())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "CASCEQ_DATASETS"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    ).stdout
    assert out.strip() == str(here)
