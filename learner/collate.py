"""Collating unrolls into one time-major tensor batch on the learner's device.

Run by: the learner process (:class:`learner.learner.Learner` collates the fresh and replayed
unrolls of every update), benchmarks and tests. Pure: no I/O, no state.
Owns: the :class:`Batch` layout (time-major ``[T or T+1, B, ...]`` tensors, the table of final
observations of truncated steps, the recurrent core's initial states) and :func:`collate`,
which builds it from validated :class:`~protocol.messages.Trajectory` objects. How many of an
update's unrolls are fresh and how a batch is cut into micro-batches is :mod:`learner.batching`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from protocol.messages import UNROLL_FIELDS, Role, Trajectory, fields_with, following_action

#: The batch's columns: every array field of the unroll (``protocol.messages.UNROLL_FIELDS``,
#: their only declaration), then ``truncated_index``, which the batch adds.
BATCH_FIELDS: tuple[str, ...] = (*UNROLL_FIELDS, "truncated_index")


class Batch(NamedTuple("BatchColumns", [(name, Tensor) for name in BATCH_FIELDS])):  # type: ignore[misc]
    """B unrolls of T steps on the learner's device: one tensor per unroll field, and one more.

    - ``Role.STEP`` fields are ``[T, B, ...]`` and ``Role.STEP_AND_BOOTSTRAP`` ones
      ``[T+1, B, ...]`` (time-major): ``obs`` [T+1, B, *obs_shape] uint8 or float32, ``action``
      [T, B] int64, ``reward`` [T, B] float32 (raw env rewards), ``terminated`` and
      ``truncated`` [T, B] bool, ``behaviour_logits`` [T, B, A] float32, ``policy_version``
      [T, B] int64.
    - ``Role.UNROLL`` fields are ``[B, ...]``: ``initial_core_state`` [B, *state_shape] float32
      (``[B, 0]`` for a feed-forward model), ``initial_last_action`` [B] int64 (A at an
      episode start; :func:`last_actions` derives the rest).
    - ``truncated_obs`` [N, *obs_shape]: the final observations of truncated steps, row for row
      with ``truncated_index`` [N] int64, each step's flat index ``t * B + b``.
    """

    __slots__ = ()

    @property
    def unroll_length(self) -> int:
        return int(self.action.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.action.shape[1])


def collate(
    trajectories: Sequence[Trajectory],
    device: torch.device | str = "cpu",
    pin_memory: bool = False,
) -> Batch:
    """Stack B validated trajectories into a time-major :class:`Batch` on ``device``.

    Args:
        trajectories: B validated unrolls of one layout.
        device: where the batch's tensors go.
        pin_memory: stack the per-step fields straight into page-locked host memory, so
            their copies to a CUDA ``device`` are asynchronous (``non_blocking``) on the
            current stream (PyTorch's pinned-memory rule); ignore it for a CPU device.

    Raises:
        ValueError: ``trajectories`` is empty.
    """
    if not trajectories:
        raise ValueError("trajectories: need at least one unroll to collate")
    batch_size = len(trajectories)

    def stack(name: str) -> Tensor:
        parts = [getattr(t, name) for t in trajectories]
        if not pin_memory:
            return torch.from_numpy(np.stack(parts, axis=1)).to(device, non_blocking=True)
        first = parts[0]
        host = torch.empty(
            (first.shape[0], batch_size, *first.shape[1:]),
            dtype=torch.from_numpy(first[:0]).dtype,
            pin_memory=True,
        )
        np.stack(parts, axis=1, out=host.numpy())  # one copy, into the pinned buffer
        return host.to(device, non_blocking=True)

    # rows of truncated_obs follow the same (b, then t) order as these flat indices
    trunc_obs = [t.truncated_obs for t in trajectories if len(t.truncated_obs)]
    index = [
        int(step) * batch_size + b
        for b, t in enumerate(trajectories)
        for step in np.flatnonzero(t.truncated)
    ]
    obs_rows = np.concatenate(trunc_obs) if trunc_obs else trajectories[0].truncated_obs
    columns = {name: stack(name) for name in fields_with(Role.STEP, Role.STEP_AND_BOOTSTRAP)}
    columns.update(
        {
            name: torch.from_numpy(np.stack([getattr(t, name) for t in trajectories])).to(device)
            for name in fields_with(Role.UNROLL)
        }
    )
    return Batch(
        **columns,
        truncated_obs=torch.from_numpy(np.ascontiguousarray(obs_rows)).to(device),
        truncated_index=torch.as_tensor(index, dtype=torch.int64, device=device),
    )


def last_actions(batch: Batch, no_action: int) -> tuple[Tensor, Tensor]:
    """The previous action of every observation of a batch (the last-action model input).

    Row 0 is ``batch.initial_last_action``; row t + 1 is ``action[t]``, or ``no_action`` (A)
    where step t ended an episode, so ``obs[t + 1]`` starts the next one
    (:func:`protocol.messages.following_action`, the rule the actor applies while acting).
    A truncated step's final observation follows that step's action.

    Returns:
        ``([T+1, B] int64, [N] int64)``: for ``batch.obs`` and for ``batch.truncated_obs``.
    """
    following = following_action(batch.action, batch.terminated | batch.truncated, no_action)
    rows = torch.cat([batch.initial_last_action.view(1, -1).to(following.dtype), following])
    return rows, batch.action.flatten()[batch.truncated_index]
