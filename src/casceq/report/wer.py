"""Per-example word error rate of a cascade's transcript, for attributing shared errors to ASR or to the LLM.

WER is computed as the field computes it (``casceq.audio.textnorm``): Whisper's English text normaliser on the
reference (what the voice was asked to say) and on the transcript alike -- lower case, punctuation removed,
contractions expanded, spelled-out numbers to digits ("twenty five" and "25" agree, and so do "nineteen ninety"
and "1990"), currency and percent forms unified ("five dollars" = "$5"), British spellings to American, fillers
("um", "uh") dropped -- then jiwer's word alignment.

The attribution rule (``TRANSCRIPT_RIGHT_WER``): a transcript is *right* when its WER after normalisation is
exactly 0. A shared error whose cascade transcript is right is an LLM error (the LLM read the right words and
still erred); otherwise it is ASR-induced.
"""

from __future__ import annotations

from casceq.audio.textnorm import normalize_for_wer, word_edits

TRANSCRIPT_RIGHT_WER = 0.0
"""A transcript whose normalised WER is at most this is "right" (exact words after normalisation)."""


def normalize_words(text: str) -> list[str]:
    """Return the words of ``text`` after Whisper's English normalisation."""
    return normalize_for_wer(text)


def wer(reference: str, transcript: str) -> float | None:
    """Word error rate of one transcript: word edits over reference words, after normalisation.

    Args:
        reference: The text the voice spoke.
        transcript: The ASR output.

    Returns:
        ``edits / len(reference words)`` (may exceed 1 with insertions), or None when the normalised
        reference has no words (WER is undefined).
    """
    edits, words = word_edits(reference, transcript)
    return None if words == 0 else edits / words


def transcript_right(reference: str, transcript: str | None) -> bool | None:
    """Whether a transcript is right (WER <= ``TRANSCRIPT_RIGHT_WER``); None when it cannot be decided."""
    if transcript is None:
        return None
    w = wer(reference, transcript)
    return None if w is None else w <= TRANSCRIPT_RIGHT_WER
