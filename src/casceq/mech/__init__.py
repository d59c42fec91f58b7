"""casceq.mech."""
