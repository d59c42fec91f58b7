"""casceq.stats."""
