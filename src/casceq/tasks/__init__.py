"""casceq.tasks."""
