"""The single ``casceq`` entry point.

Each sub-command lives in ``casceq.commands.<module>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import only the standard library at module level, so building the whole
parser (``casceq --help``, ``casceq compare --help``) never imports numpy, torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# (command, module under casceq.commands, one-line help). Adding a command = one line here + one module.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("tasks", "tasks", "list the tasks, their labels and whether text suffices"),
    ("doctor", "doctor", "check a speech LLM on a few clips before a long run (weights, prompts, scores)"),
    (
        "compare",
        "compare",
        "behavioural statistics (accuracy, kappa, error overlap, McNemar+BH) of predictions",
    ),
    ("import", "import_", "import interchange JSONL or harness logs (--from) into a store"),
    ("export", "export", "export a store's predictions as interchange JSONL"),
    ("export-dataset", "export_dataset", "export spoken test sets as a Hugging Face dataset on disk"),
    ("synth", "synth", "synthesise spoken test sets with offline TTS voices"),
    ("run", "run", "run an experiment config (systems x tasks x conditions) into a run folder"),
    ("demo", "demo", "the offline default experiment, end to end"),
    ("convert-whisper", "convert_whisper", "convert a CTranslate2 Whisper folder into a transformers folder"),
    ("capture", "capture", "capture hidden states at chosen layers, streamed to disk"),
    ("probe", "probe", "linear probes (energy, pitch, CTC, bag-of-characters) on captured states"),
    ("lens", "lens", "logit lens over captured layers"),
    ("implicit", "implicit", "the implicit cascade: lens text fed to a second copy of the backbone"),
    ("erase", "erase", "LEACE concept erasure during generation, with controls"),
    ("report", "report", "tables, figures and an HTML report from a run folder"),
    ("train", "train", "train models (the offline speech LLM)"),
    ("reproduce", "reproduce", "reproduce the paper's experiment at this machine's scale"),
    ("power", "power", "items and wall time each claim of reproduce needs for 80% power"),
)


def _available() -> list[tuple[str, str, str]]:
    out = []
    for name, module, helptext in COMMANDS:
        if importlib.util.find_spec(f"casceq.commands.{module}") is not None:
            out.append((name, module, helptext))
    return out


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (cheap: command modules import only the standard library)."""
    parser = argparse.ArgumentParser(
        prog="casceq",
        description="Matched-backbone testing of speech LLMs against ASR->LLM cascades (Billa, 2026).",
    )
    parser.add_argument("--version", action="version", version="casceq 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, helptext in _available():
        mod = importlib.import_module(f"casceq.commands.{module}")
        # argparse %-formats help strings: a literal "%" (e.g. "80% power") must be doubled there.
        p = sub.add_parser(
            name, help=helptext.replace("%", "%%"), description=(mod.__doc__ or helptext).strip()
        )
        mod.add_arguments(p)
        if not any(a.dest == "tasks_file" for a in p._actions):
            p.add_argument(
                "--tasks-file",
                action="append",
                default=None,
                metavar="FILE",
                help="a TOML file of user-defined tasks (docs/tasks.md); may be given more than once",
            )
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and dispatch to the command module; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0
    mod = importlib.import_module(f"casceq.commands.{args._module}")
    from casceq.errors import CasceqError
    from casceq.redact import redact

    try:
        for path in getattr(args, "tasks_file", None) or ():
            from casceq.tasks import register_tasks_file

            register_tasks_file(path)
        return int(mod.run(args) or 0)
    except CasceqError as exc:
        print(f"casceq {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `casceq tasks | head`: the reader went away; not an error of ours
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"casceq {args.command}: interrupted (a run resumes where it stopped)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
