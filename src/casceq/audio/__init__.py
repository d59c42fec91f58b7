"""casceq.audio."""
