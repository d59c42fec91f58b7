"""casceq.io."""
