"""The matched cascade's prompt cut around its query: where a speech LLM puts the audio.

A prompt is rendered with ``MARK`` standing for the query text, then cut at the mark; the audio goes in the cut.
The native Ultravox back end reads its matched prompt this way at run time, and training
(``casceq.train.matched``) builds its token prefix and suffix the same way.
"""

from __future__ import annotations

MARK = "\x00AUDIO\x00"
"""Stands for the query text while a prompt is rendered; never produced by a task's text."""


def split_rendered(rendered: str) -> tuple[str, str]:
    """Cut a prompt rendered with ``MARK`` as the query into (before, after); the space before it goes too."""
    before, sep, after = rendered.partition(MARK)
    if not sep:
        raise ValueError("the rendered prompt does not contain the query mark")
    return before.removesuffix(" "), after
