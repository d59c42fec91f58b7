"""casceq.run."""
