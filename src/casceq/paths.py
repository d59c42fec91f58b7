"""Where things are: shared datasets, caches, bundled data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = PACKAGE_DIR / "data"


def datasets_dir() -> Path | None:
    """The folder of official-format datasets, or None when there is none.

    Looked up in order: ``$CASCEQ_DATASETS``; ``../shared/datasets`` beside the project checkout (the CI and
    developer layout); ``../shared/datasets`` relative to the working directory.
    """
    env = os.environ.get("CASCEQ_DATASETS")
    if env:
        return Path(env)
    candidates = [
        PACKAGE_DIR.parents[1] / ".." / "shared" / "datasets",  # src/casceq -> checkout -> ../shared
        Path.cwd() / ".." / "shared" / "datasets",
    ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def cache_dir() -> Path:
    """Cache root for converted models, synthesised audio and noise variants (``$CASCEQ_CACHE``)."""
    env = os.environ.get("CASCEQ_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "casceq"
    root.mkdir(parents=True, exist_ok=True)
    return root
