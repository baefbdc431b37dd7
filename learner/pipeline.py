"""Batch preparation beside the training step: the learner's two-stage pipeline.

Run by: the learner process (:class:`learner.server.LearnerServer` with ``learner.prefetch``).
Owns: the worker thread that runs :meth:`learner.learner.Learner.prepare` (replay sampling,
collation into pinned host memory, the host-to-device copies) for the next update while the
main thread trains on the current one, the CUDA copy stream those copies go on, the seconds
the worker spends preparing, and the main thread's :class:`TimeSplit`.

Why: without it the learner does everything in turn (receive and decode, validate, collate,
copy, forward and backward, publish), so a GPU idles during every CPU part. Sample Factory's
learner prepares its training batches on a thread beside the training step for the same reason.
On a CPU device the worker only moves the collation (numpy and torch copies, which
release the GIL) off the training thread.

Ordering on CUDA: the worker's copies are queued on a dedicated stream and an event is recorded
after them; :meth:`BatchPrefetcher.take` makes the training stream wait on that event (no host
sync) and marks every tensor of the batch as used by the training stream
(``Tensor.record_stream``), so the caching allocator never hands their memory to the next batch
while the update still reads it (the PyTorch CUDA semantics notes on streams).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from learner.learner import Learner, PreparedBatch
from protocol.messages import Trajectory


@dataclass
class TimeSplit:
    """Where the learner's main thread spends its time, in seconds of wall clock since start,
    and what it publishes (the socket benchmark reports these).

    Attributes:
        wait_s: polling for messages (up to 50 ms at a time when there is nothing to train
            on): the time the learner waits for data.
        receive_s: handling messages (decode, validation, accounting, credits).
        prepare_s: preparing batches on the main thread (``learner.prefetch`` off).
        prepare_wait_s: waiting for the worker's batch (``learner.prefetch`` on); the
            worker's own time is :attr:`BatchPrefetcher.prepare_s`.
        train_s: :meth:`Learner.apply` (forward, backward, optimiser step, replay writes).
        publish_s: encoding and sending weights, with the version-file write.
        weights_published: weights messages sent.
        weight_bytes: bytes of parameters in those messages.
    """

    wait_s: float = 0.0
    receive_s: float = 0.0
    prepare_s: float = 0.0
    prepare_wait_s: float = 0.0
    train_s: float = 0.0
    publish_s: float = 0.0
    weights_published: int = 0
    weight_bytes: int = 0


_Pending = tuple[PreparedBatch, Any]  # the batch and its CUDA copy event (None on a CPU)


class BatchPrefetcher:
    """Runs :meth:`Learner.prepare` on one worker thread, one batch ahead of training.

    Usage: ``future = prefetcher.submit(fresh, progress)``; later ``prepared =
    prefetcher.take(future)`` (blocks until it is ready) and ``learner.apply(prepared)``.
    Submit the next batch before applying the current one, so the two overlap.

    Args:
        learner: the learner whose :meth:`~Learner.prepare` the worker runs.

    Attributes:
        prepare_s: seconds the worker has spent preparing batches (wall clock, its thread).
    """

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        cuda = learner.device.type == "cuda"
        self._stream = torch.cuda.Stream(learner.device) if cuda else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="batch-prep")
        self.prepare_s = 0.0

    def submit(self, fresh: list[Trajectory], progress: float) -> Future[_Pending]:
        """Start preparing an update of ``fresh`` unrolls (:meth:`Learner.prepare`'s args)."""
        return self._pool.submit(self._prepare, fresh, progress)

    def _prepare(self, fresh: list[Trajectory], progress: float) -> _Pending:
        start = time.perf_counter()
        try:
            if self._stream is None:
                return self.learner.prepare(fresh, progress), None
            with torch.cuda.stream(self._stream):
                prepared = self.learner.prepare(fresh, progress, pin_memory=True)
                event = torch.cuda.Event()
                event.record(self._stream)
            return prepared, event
        finally:
            self.prepare_s += time.perf_counter() - start

    def take(self, future: Future[_Pending]) -> PreparedBatch:
        """The prepared batch, ready for :meth:`Learner.apply` on this (the training) thread.

        Raises:
            Whatever :meth:`Learner.prepare` raised on the worker.
        """
        prepared, event = future.result()
        if event is not None:
            current = torch.cuda.current_stream(self.learner.device)
            current.wait_event(event)
            for tensor in prepared.batch:
                if isinstance(tensor, torch.Tensor):
                    tensor.record_stream(current)
        return prepared

    def close(self) -> None:
        """Finish the batch being prepared, if any, and stop the worker thread."""
        self._pool.shutdown(wait=True)
