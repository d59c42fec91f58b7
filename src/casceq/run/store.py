"""Compatibility name: the prediction store is ``casceq.io.store`` (a file format, below ``run``).

Kept only for the importers in ``commands/`` and ``report/`` that other refactors of issue 22 rewrite;
new code imports ``casceq.io.store``.
"""

from casceq.io.store import STORE_FILENAME, Store

__all__ = ["STORE_FILENAME", "Store"]
