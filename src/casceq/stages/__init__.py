"""Stages: one module per stage of casceq, a frozen config in and a typed result out (docs/architecture.md)."""
