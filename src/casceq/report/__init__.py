"""casceq.report."""
