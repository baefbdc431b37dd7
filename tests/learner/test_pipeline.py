"""Tests for learner/pipeline.py and Learner.prepare / apply: a batch prepared on the worker
thread trains exactly as one prepared in turn."""

from __future__ import annotations

import threading

import pytest
import torch

from learner.pipeline import BatchPrefetcher
from tests.learner.builders import learner, params, unrolls


def test_prefetched_updates_equal_updates_in_turn_without_replay() -> None:
    in_turn, piped = learner(), learner()
    batches = [unrolls(4, seed=i) for i in range(5)]
    expected = [in_turn.step(fresh, progress=i / 10) for i, fresh in enumerate(batches)]
    prefetcher = BatchPrefetcher(piped)
    workers: set[str] = set()
    prepare = piped.prepare

    def recording_prepare(*args: object, **kwargs: object) -> object:
        workers.add(threading.current_thread().name)
        return prepare(*args, **kwargs)  # type: ignore[arg-type]

    piped.prepare = recording_prepare  # type: ignore[method-assign]
    try:
        future = prefetcher.submit(batches[0], 0.0)
        got = []
        for i in range(1, len(batches) + 1):
            prepared = prefetcher.take(future)
            if i < len(batches):  # the next batch prepares while this one trains
                future = prefetcher.submit(batches[i], i / 10)
            got.append(piped.apply(prepared))
    finally:
        prefetcher.close()
    assert got == expected
    for x, y in zip(params(in_turn), params(piped)):
        assert torch.equal(x, y)
    assert all(name.startswith("batch-prep") for name in workers) and workers
    assert prefetcher.prepare_s > 0


def test_prefetch_with_replay_samples_one_update_ahead_and_stores_every_unroll() -> None:
    lrn = learner(replay__enabled=True, replay__ratio=0.5, replay__min_size=1)
    n = lrn.fresh_per_step
    prefetcher = BatchPrefetcher(lrn)
    try:
        future = prefetcher.submit(unrolls(n, seed=0), 0.0)
        for i in range(1, 6):
            prepared = prefetcher.take(future)
            future = prefetcher.submit(unrolls(n, seed=i), i / 10)
            metrics = lrn.apply(prepared)
            assert metrics["replay/pushes"] == i * n
        lrn.apply(prefetcher.take(future))
    finally:
        prefetcher.close()
    assert len(lrn.replay) == 6 * n and lrn.updates == 6
    # later batches mix in replayed unrolls (the second may or may not: it was sampled
    # while the first update trained, before or after its push)
    assert metrics["replay/replayed_fraction"] == 0.5


def test_an_error_on_the_worker_reaches_the_training_thread() -> None:
    prefetcher = BatchPrefetcher(learner())
    try:
        future = prefetcher.submit(unrolls(3), 0.0)  # batch 4: one unroll short
        with pytest.raises(ValueError, match="fresh"):
            prefetcher.take(future)
    finally:
        prefetcher.close()
