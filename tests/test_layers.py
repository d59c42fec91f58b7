"""Library layers: imports run downwards, own modules are imported at module top, registries stay lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "casceq"

# Folders whose own-module imports sit at module top; the files named here belong to other refactors.
HOISTED = ("tasks", "audio", "stats", "systems", "io", "mech", "run", "train")
NOT_YET = {"run/outputs.py", "run/demo.py", "run/config.py", "train/evaluate.py"}
LAZY_MARK = "# registry: lazy"


def _imports(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import of casceq in ``path``, with whether it sits inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                )
                if any(n == "casceq" or n.startswith("casceq.") for n in names):
                    found.append((child, in_function))
            is_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            is_type_only = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            if not is_type_only:
                visit(child, in_function or is_function)

    visit(tree, False)
    return found


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def _files(folder: str) -> list[Path]:
    return sorted((SRC / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("folder", "higher"),
    [("systems", "casceq.train"), ("systems", "casceq.run"), ("io", "casceq.run"), ("io", "casceq.report")],
)
def test_a_layer_does_not_import_a_higher_one(folder: str, higher: str) -> None:
    bad = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in _files(folder)
        for node, _ in _imports(path)
        if any(t == higher or t.startswith(higher + ".") for t in _targets(node))
    ]
    assert bad == []


def test_own_modules_are_imported_at_module_top() -> None:
    """Inside a function only a registry's lazy factory imports an own module (marked so)."""
    bad = []
    for folder in HOISTED:
        for path in _files(folder):
            rel = path.relative_to(SRC).as_posix()
            if rel in NOT_YET:
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            for node, in_function in _imports(path):
                text = " ".join(lines[node.lineno - 1 : node.end_lineno])
                if in_function and LAZY_MARK not in text:
                    bad.append(f"{rel}:{node.lineno}: {text.strip()}")
    assert bad == []


def test_the_checker_sees_a_function_level_import(tmp_path: Path) -> None:
    """Positive control: the scan above finds an own-module import inside a function."""
    path = tmp_path / "m.py"
    path.write_text(
        "import json\n\ndef f():\n    from casceq.errors import InputError\n    return InputError\n"
    )
    assert [(node.lineno, inside) for node, inside in _imports(path)] == [(4, True)]


def test_registry_lookups_import_no_heavy_package() -> None:
    """Looking up every registry, including an unknown spec's error, imports no torch or transformers."""
    code = (
        "import sys\n"
        "from casceq.errors import InputError\n"
        "from casceq.systems.asr import make_asr\n"
        "from casceq.systems.llm import make_llm\n"
        "from casceq.systems.speech_llm import make_speech_llm\n"
        "import casceq.run.build\n"
        "for make, spec in ((make_asr, 'kaldi:x'), (make_llm, 'bogus:x'), (make_speech_llm, 'whisper-llm:x')):\n"
        "    try:\n"
        "        make(spec)\n"
        "    except InputError:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'faster_whisper', 'vllm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registries_are_prefix_to_factory_mappings() -> None:
    """One shape: the known prefixes the errors list are exactly the registry's keys, each a callable."""
    import casceq.systems.asr as asr
    import casceq.systems.llm as llm
    import casceq.systems.speech_llm.registry as speech

    assert tuple(asr._FACTORIES) == asr.ASR_KINDS
    assert tuple(f"{p}:" for p in llm._FACTORIES) == llm.PREFIXES
    assert tuple(speech._FACTORIES) == speech.SPEECH_LLM_FAMILIES
    for registry in (asr._FACTORIES, llm._FACTORIES, speech._FACTORIES):
        assert all(callable(f) for f in registry.values())
