"""casceq.systems."""
