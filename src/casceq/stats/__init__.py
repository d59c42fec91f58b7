"""Behavioural statistics: accuracy, Cohen's kappa with bootstrap intervals, error overlap, McNemar + BH.

Modules: ``agreement`` (kappa, vectorised bootstrap), ``errors`` (conditional error overlap, discordance,
disagreement lists), ``tests`` (exact McNemar, Benjamini–Hochberg, Wilson), ``align`` (aligning prediction rows),
``results`` (typed results and their JSON form) and ``compare`` (everything together, as ``casceq compare``).
"""

from casceq.stats.compare import compare
from casceq.stats.results import Accuracy, Agreement, BackboneConfound, CompareResult, InvalidCount

__all__ = ["Accuracy", "Agreement", "BackboneConfound", "CompareResult", "InvalidCount", "compare"]
