"""Stages: one module per step of the work, between the CLI (``casceq.commands``) and the library.

A stage takes a frozen config dataclass (no argparse), does its work through the library (``casceq.mech``,
``casceq.run``, ...) and returns a frozen, typed result with ``to_json()``/``from_json()``. What several stages
share (loaded models, items, transcripts, calibration offsets, provenance) is owned by one
:class:`casceq.stages.context.StageContext`. Commands and ``casceq reproduce`` call the stages; nothing in the
library calls them.
"""
