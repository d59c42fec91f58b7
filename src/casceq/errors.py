"""Exceptions that the CLI turns into a one-line error message and exit code 2."""

from __future__ import annotations


class CasceqError(Exception):
    """Base class of user-facing errors (bad input, missing optional package, bad config)."""


class InputError(CasceqError):
    """Bad input data. The message names the file and line (or example id) at fault."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class LeakageError(InputError):
    """Evaluated items overlap what a decision rule or model was fitted on (calibration, erasers, training).

    Never caught by a stage's "continue without it" handling: a leak stops the run with the count named.
    """


class MissingDependency(CasceqError):
    """An optional package is needed; the message names what to install."""

    def __init__(self, package: str, feature: str, extra: str | None = None) -> None:
        hint = f"pip install 'casceq[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}' ({hint})")
        self.package = package


def require(module: str, feature: str, *, package: str | None = None, extra: str | None = None):  # type: ignore[no-untyped-def]
    """Import ``module`` or raise ``MissingDependency`` naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(package or module, feature, extra) from exc
