"""Sub-command modules: each imports only the standard library at module level."""
