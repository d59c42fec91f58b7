"""Unit-level guarantees of the runner that need no model."""

from __future__ import annotations

import pytest

from casceq.run.items import Item
from casceq.run.runner import predict_batch_safely
from casceq.tasks import get_task
from casceq.types import Example


class _OOMAbove:
    """A system whose back end runs out of memory on batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, []

    def predict(self, task, condition, examples, audios, trs):
        self.calls.append(len(examples))
        if len(examples) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [ex.id for ex in examples]


def _items(n):
    return [Item(Example(f"e{i}", "sst2", "t", "positive"), f"e{i}", None) for i in range(n)]


def test_out_of_memory_halves_the_batch_and_keeps_order():
    sys_ = _OOMAbove(limit=2)
    items = _items(8)
    out = predict_batch_safely(sys_, get_task("sst2"), "clean", items, [None] * 8, None)
    assert out == [f"e{i}" for i in range(8)]
    assert sys_.calls == [8, 4, 2, 2, 4, 2, 2]  # each half split until it fits


def test_other_errors_are_not_retried():
    class Broken(_OOMAbove):
        def predict(self, *a):
            self.calls.append(1)
            raise RuntimeError("shape mismatch")

    b = Broken(0)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        predict_batch_safely(b, get_task("sst2"), "clean", _items(4), [None] * 4, None)
    assert b.calls == [1]


def test_single_item_oom_is_raised():
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_batch_safely(_OOMAbove(limit=0), get_task("sst2"), "clean", _items(1), [None], None)
