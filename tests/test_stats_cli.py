"""`casceq compare` end to end on interchange JSONL files written here."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from casceq.cli import main

LABELS = ("World", "Sports", "Business", "Sci/Tech")
ROOT = Path(__file__).resolve().parents[1]


def write_files(tmp_path: Path, n: int = 80, seed: int = 0, drop: int = 0) -> tuple[list[Path], dict]:
    """Three systems on ag_news (clean and babble@5): matched cascade + speech LLM (smol), other cascade."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, n)
    labels = {}
    base = np.where(rng.random(n) < 0.7, gold, rng.choice(LABELS, n))
    labels["cascade-smol"] = base
    labels["slm-smol"] = np.where(rng.random(n) < 0.8, base, rng.choice([*LABELS, "no idea"], n))
    labels["cascade-gemma"] = np.where(rng.random(n) < 0.6, gold, rng.choice(LABELS, n))
    paths = []
    for system, answers in labels.items():
        path = tmp_path / f"{system}.jsonl"
        rows = []
        for condition in ("clean", "babble@5"):
            for i in range(n - (drop if system == "slm-smol" else 0)):
                rec = {"system": system, "task": "ag_news", "condition": condition, "example_id": f"ag-{i:03d}",
                       "prediction": str(answers[i]), "gold": str(gold[i]),
                       "backbone": "smol" if "smol" in system else "gemma"}  # fmt: skip
                if system.startswith("cascade"):
                    rec["transcript"] = "some words"
                rows.append(json.dumps(rec))
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        paths.append(path)
    return paths, labels


def test_cli_json_matches_sklearn_and_prints_tables(tmp_path, capsys):
    paths, labels = write_files(tmp_path)
    out = tmp_path / "out" / "stats.json"
    assert main(["compare", *map(str, paths), "--bootstrap", "200", "--seed", "5", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Backbone confound" in printed and "cascade-smol" in printed
    doc = json.loads(out.read_text())
    assert len(doc["pairs"]) == 6 and len(doc["accuracy"]) == 6  # 3 pairs/systems x 2 conditions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in doc["pairs"]:
            la = [x if x in LABELS else "INVALID" for x in labels[row["a"]]]
            lb = [x if x in LABELS else "INVALID" for x in labels[row["b"]]]
            assert row["kappa"] == pytest.approx(cohen_kappa_score(la, lb), abs=1e-12)
            assert row["overlap_chance"] == pytest.approx(1 / 3)
    inv = {(r["system"], r["condition"]): r["n_invalid"] for r in doc["invalid"]}
    assert inv[("slm-smol", "clean")] == sum(x == "no idea" for x in labels["slm-smol"]) > 0
    assert {(c["speech_llm"], c["matched"], c["mismatched"]) for c in doc["backbone_confound"]} == {
        ("slm-smol", "cascade-smol", "cascade-gemma")
    }


def test_cli_missing_ids_fail_then_intersect(tmp_path, capsys):
    paths, _ = write_files(tmp_path, drop=3)
    assert main(["compare", *map(str, paths), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "slm-smol lacks 3: ag-077, ag-078, ag-079" in err and "--intersect" in err
    assert main(["compare", *map(str, paths), "--bootstrap", "0", "--intersect", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)  # tables went to stderr, JSON alone to stdout
    assert {r["n"] for r in doc["pairs"]} == {77}


def test_cli_pairs_and_kinds(tmp_path, capsys):
    paths, _ = write_files(tmp_path)
    args = [
        "compare",
        *map(str, paths),
        "--bootstrap",
        "0",
        "--json",
        "-",
        "--pairs",
        "slm-smol:cascade-smol",
    ]
    assert main([*args, "--kind", "slm-smol=text"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["a"], r["b"]) for r in doc["pairs"]] == [("slm-smol", "cascade-smol")] * 2
    assert all(r["matched"] for r in doc["pairs"])
    assert doc["backbone_confound"] == []  # declared text-only: no confound rows
    assert main([*args[:-1], "slm-smol:nobody"]) == 2
    assert "does not name two of the systems" in capsys.readouterr().err


def test_command_module_imports_only_the_standard_library():
    code = (
        "import sys, casceq.commands.compare; assert 'numpy' not in sys.modules and 'rich' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_example_shows_the_matched_pair_agreeing_more(capsys):
    files = sorted((ROOT / "examples" / "interchange").glob("*.jsonl"))
    if not files:
        pytest.skip("examples/interchange not found")
    assert main(["compare", *map(str, files), "--bootstrap", "200", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backbone_confound"] and all(c["delta_kappa"] > 0 for c in doc["backbone_confound"])


def test_cli_bh_family_option_names_the_paper_family(tmp_path, capsys):
    from statsmodels.stats.multitest import multipletests

    paths, _ = write_files(tmp_path)
    args = ["compare", *map(str, paths), "--bootstrap", "0", "--json", "-"]
    assert main([*args, "--bh-family", "speech_vs_cascade"]) == 0
    captured = capsys.readouterr()
    assert "per task and condition over the speech LLMs' tests against cascades" in captured.err
    rows = json.loads(captured.out)["pairs"]
    for condition in ("clean", "babble@5"):
        # the paper's family: slm-smol against each cascade, adjusted together; the cascade pair on its own
        mine = [r for r in rows if r["condition"] == condition and "slm-smol" in (r["a"], r["b"])]
        assert len(mine) == 2
        ref = multipletests([r["mcnemar_p"] for r in mine], method="fdr_bh")[1]
        assert [r["q_value"] for r in mine] == pytest.approx(list(ref))
        (other,) = [r for r in rows if r["condition"] == condition and "slm-smol" not in (r["a"], r["b"])]
        assert other["q_value"] == pytest.approx(other["mcnemar_p"])
    with pytest.raises(SystemExit):  # argparse refuses another family by name
        main([*args, "--bh-family", "everything"])
