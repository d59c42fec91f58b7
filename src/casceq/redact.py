"""Keep secrets out of errors, logs and files.

casceq takes API keys only by reference (the name of an environment variable). A back end that reads a key
registers it here; :func:`redact` then replaces it, the values of the well-known key variables, ``Bearer``
tokens and ``key=`` URL parameters with ``[redacted]``. The runner applies it to every failure it prints or
records, and the CLI to every error it prints, so a server that echoes the ``Authorization`` header in its
error body cannot put the key into ``failures.jsonl``, the report or the terminal.
"""

from __future__ import annotations

import os
import re

MASK = "[redacted]"
SECRET_VARIABLES = (
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
"""Environment variables whose values are masked even when no back end registered them."""
MIN_SECRET_CHARS = 6
"""Shorter values are not masked: they would mask ordinary words (and are no real keys)."""

_REGISTERED: set[str] = set()
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+")
_URL_KEY = re.compile(r"(?i)([?&](?:api_?key|key|access_token|token)=)[^&\s\"'#]+")


def register_secret(value: str | None) -> None:
    """Remember a secret this process uses, so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _REGISTERED.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret, ``Bearer`` token and ``key=`` URL parameter replaced by ``[redacted]``."""
    known = set(_REGISTERED)
    known.update(v for v in (os.environ.get(name) for name in SECRET_VARIABLES) if v)
    for secret in sorted((s for s in known if len(s) >= MIN_SECRET_CHARS), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _URL_KEY.sub(lambda m: f"{m.group(1)}{MASK}", text)
