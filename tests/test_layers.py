"""Library layers: imports run downwards, own modules are imported at module top, registries stay lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "casceq"

# Folders whose own-module imports sit at module top (commands/ keep their stage's import in the handler, so
# that ``casceq --help`` imports no numpy or torch: tests/test_cli.py).
HOISTED = (
    "tasks",
    "audio",
    "stats",
    "systems",
    "io",
    "mech",
    "run",
    "train",
    "report",
    "stages",
    "reproduce",
)
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


LAYERS: tuple[tuple[str, ...], ...] = (
    ("types", "errors", "paths", "redact", "jsonlines"),
    ("tasks",),
    ("audio", "stats"),
    ("systems", "io"),
    ("mech", "run"),
    ("report", "train"),
    ("stages",),
    ("reproduce",),
    ("commands",),
    ("cli",),
)
"""The layer order of docs/architecture.md, bottom to top (a folder, or a module of the package's top)."""

LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str:
    """The folder (or top module) of a ``casceq.x.y`` module name."""
    return module.split(".")[1]


def _upward_imports(path: Path, unit: str) -> list[str]:
    """Imports in ``path`` (a module of ``unit``) of another unit that is not in a lower layer.

    The base layer (types, errors, ...) may import within itself; any other layer only strictly downwards, so two
    folders of one layer do not import each other.
    """
    bad = []
    for node, _ in _imports(path):
        names = _targets(node)
        if isinstance(node, ast.ImportFrom) and node.module == "casceq":  # ``from casceq import paths``
            names = [f"casceq.{a.name}" for a in node.names]
        for name in names:
            if name == "casceq" or _unit(name) == unit:
                continue
            target = _unit(name)
            if LEVEL[target] > LEVEL[unit] or (LEVEL[target] == LEVEL[unit] and LEVEL[unit] > 0):
                bad.append(f"{node.lineno}: {name}")
    return bad


def test_every_import_runs_down_the_documented_layers() -> None:
    """Each module imports only from lower layers of ``LAYERS`` (the package's face, ``__init__.py``, aside)."""
    units = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")} - {"__init__"}
    assert units == set(LEVEL)  # every folder has its place in the order
    bad = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if (unit := path.relative_to(SRC).parts[0].removesuffix(".py")) != "__init__"
        for line in _upward_imports(path, unit)
    ]
    assert bad == []


def test_the_layer_check_sees_an_upward_or_sideways_import(tmp_path: Path) -> None:
    """Positive control: io importing run (up) or systems (same layer) is found; io importing tasks is not."""
    path = tmp_path / "m.py"
    path.write_text(
        "from casceq.tasks import get_task\n"
        "from casceq.run.config import ExperimentConfig\n"
        "def f():\n    import casceq.systems.base\n"
        "from casceq import reproduce\n"
    )
    assert _upward_imports(path, "io") == [
        "2: casceq.run.config",
        "4: casceq.systems.base",
        "5: casceq.reproduce",
    ]
    assert _upward_imports(path, "stages") == ["5: casceq.reproduce"]


def test_own_modules_are_imported_at_module_top() -> None:
    """Inside a function only a registry's lazy factory imports an own module (marked so)."""
    bad = []
    for folder in HOISTED:
        for path in _files(folder):
            rel = path.relative_to(SRC).as_posix()
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


def _imports_of_commands(path: Path) -> list[int]:
    """Lines of ``path`` that import ``casceq.commands`` (at module top or inside a function)."""
    lines = []
    for node, _ in _imports(path):
        names = _targets(node)
        if isinstance(node, ast.ImportFrom):  # ``from casceq import commands`` names the package in the alias
            names += [f"{node.module}.{a.name}" for a in node.names]
        if any(n == "casceq.commands" or n.startswith("casceq.commands.") for n in names):
            lines.append(node.lineno)
    return lines


def test_only_the_cli_imports_commands() -> None:
    """No module outside ``commands/`` and ``cli.py`` imports ``casceq.commands`` (the CLI is the top layer)."""
    bad = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] not in ("commands", "cli.py")
        for line in _imports_of_commands(path)
    ]
    assert bad == []


def test_the_commands_check_sees_an_import_of_commands(tmp_path: Path) -> None:
    """Positive control: each way of importing a command module is found (and other imports are not)."""
    path = tmp_path / "m.py"
    path.write_text(
        "from casceq.commands.implicit import context_config\n"
        "import casceq.commands.run\n"
        "from casceq.stages.run import run\n"
        "def f():\n    from casceq import commands\n    return commands\n"
    )
    assert _imports_of_commands(path) == [1, 2, 5]


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
