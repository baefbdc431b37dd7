"""Prioritized experience replay of whole unrolls (Schaul et al. 2016, proportional variant).

Run by: the learner process (next to :mod:`learner.learner`), benchmarks and tests.
Owns: the replay storage of unrolls, their priorities (kept in a :class:`learner.sum_tree.SumTree`),
priority updates and importance-sampling (IS) weights. No I/O, no sockets and no torch:
everything is numpy, and the learner converts what it samples (:func:`learner.collate.collate`
takes the trajectories).

Paper: T. Schaul, J. Quan, I. Antonoglou, D. Silver, "Prioritized Experience Replay", ICLR 2016.

- Sec. 3.3, Eq. 1: ``P(i) = p_i^alpha / sum_k p_k^alpha`` with proportional priorities
  ``p_i = |delta_i| + eps``. Here one item is one unroll of T steps; the learner passes a raw
  priority per unroll (e.g. mean ``|vs - V|``) and the tree stores ``(p + eps)^alpha``.
- Sec. 3.4: IS weights ``w_i = (N * P(i))^-beta / max_j w_j``, with the max taken over the
  sampled batch (as in Algorithm 1), and beta annealed linearly to 1 (:meth:`beta_at`).
- Appendix B.2.1: sampling is **stratified**: the total priority is split into ``n`` equal
  segments and one prefix sum is drawn uniformly in each, which lowers the variance of the
  batch composition while keeping every item's marginal probability ``n * P(i)`` per batch.
- New unrolls get the maximum priority currently stored (Algorithm 1, line 6), 1.0 when empty,
  so everything is replayed at least once soon after it arrives.

Memory (what lets 100,000 Mario unrolls fit in RAM): an observation ``obs[t]`` of shape
(stack, H, W) shares stack-1 frames with ``obs[t-1]`` inside an episode, so each unroll stores
its unique frames once (budget ``T + stack`` frames) plus a (T+1, stack) index table. Sharing is
detected by comparing frame bytes, never assumed, so episode resets (the reset frame repeated
across the stack), odd wrappers and garbage all round-trip exactly; an unroll needing more
frames than the budget is stored whole in a side dict and counted as a dedup overflow.
Vector observations (CartPole) are stored as they are.

Storage dtypes (all lossless; sampled trajectories equal the pushed ones bit for bit):
observations keep their dtype (uint8 frames); ``action`` is narrowed to the smallest unsigned
integer that holds ``num_actions - 1`` (validated range, so exact); ``behaviour_logits`` and
``reward`` stay float32: float16 logits would save 280 bytes of a 169 KB Mario unroll (0.2%)
but perturb ``log_rhos`` by about 1e-3 * |logit| and break the exact round trip, and float16
rewards are not exact for Mario's summed rewards beyond 2048 or for scaled rewards.

Sampled trajectories carry ``episodes=[]``: episode statistics were reported when the unroll
first arrived, and replaying them would count the same episode again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from learner.sum_tree import SumTree, check_priorities
from protocol.messages import Trajectory, TrajectorySpec

STATE_VERSION = 2
"""Bumped on any incompatible change of :meth:`PrioritizedReplay.state_dict`."""

# Header fields of a Trajectory (not arrays, not in the spec) that the replay keeps per slot.
_INT_HEADER = ("actor_id", "seq", "env_index")


class ReplaySample(NamedTuple):
    """One prioritized batch drawn by :meth:`PrioritizedReplay.sample`.

    Attributes:
        indices: [n] int64 slots of the sampled unrolls, ascending (stratified sampling walks
            the tree left to right); a slot can repeat.
        trajectories: n reconstructed :class:`Trajectory` objects, arrays equal to the pushed
            ones in shape, dtype and value (``episodes`` empty, see the module docstring).
        weights: [n] float32 IS weights ``(N * P(i))^-beta / max_j w_j`` (Schaul et al. 2016,
            Sec. 3.4), max over this batch, so the largest is 1.
        probabilities: [n] float64 ``P(i) = p_i^alpha / sum_k p_k^alpha`` (Eq. 1).
        push_ids: [n] int64 push number of each sampled unroll (0 for the first push ever);
            pass them back to :meth:`PrioritizedReplay.update_priorities` so priorities of
            unrolls evicted meanwhile are not written onto their successors.
    """

    indices: np.ndarray
    trajectories: list[Trajectory]
    weights: np.ndarray
    probabilities: np.ndarray
    push_ids: np.ndarray


class PrioritizedReplay:
    """Bounded prioritized replay of whole unrolls with frame de-duplication.

    Args:
        spec: the run's trajectory layout; storage is derived from ``spec.fields``.
        capacity: maximum number of unrolls stored (>= 1); the oldest is evicted beyond it.
        alpha: priority exponent (0 = uniform sampling), >= 0.
        beta: initial IS exponent in [0, 1] (used by :meth:`sample` when no beta is given, and
            the start of :meth:`beta_at`).
        eps: added to raw priorities so that no stored unroll has probability 0, > 0.
        seed: seed of the sampling generator (numpy PCG64).

    Raises:
        ValueError: an argument out of range (the message names it).
    """

    def __init__(
        self,
        spec: TrajectorySpec,
        capacity: int,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int = 0,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise ValueError(f"capacity: expected an int, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha: must be finite and >= 0, got {alpha}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta: must lie in [0, 1], got {beta}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps: must be finite and > 0, got {eps}")
        self.spec = spec
        self._capacity = int(capacity)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.eps = float(eps)
        self._rng = np.random.default_rng(seed)
        self._tree = SumTree(self._capacity)

        t = spec.unroll_length
        fields = spec.fields
        obs_spec = fields["obs"]
        self._obs_dtype = obs_spec.dtype
        # Frame de-duplication applies to stacked images (stack, H, W): one new frame per step
        # inside an episode and per reset (the reset frame fills the stack), so T + stack frames
        # cover an unroll unless the stack behaves in an unexpected way.
        self._dedup = len(spec.obs_shape) == 3
        if self._dedup:
            stack = spec.obs_shape[0]
            self._stack = stack
            self._frame_budget = t + stack
            index_dtype = np.min_scalar_type(self._frame_budget - 1)
            # np.empty, not np.zeros: numpy backs large allocations with transparent huge pages,
            # which fills 30x faster than calloc's 4 KB zero pages (measured). Only frames a
            # push wrote are ever referenced by the index table, so the garbage is never read
            # into a trajectory (overflow slots gather garbage and overwrite it at once).
            self._frames = np.empty(
                (self._capacity, self._frame_budget, *spec.obs_shape[1:]), dtype=self._obs_dtype
            )
            self._frame_index = np.zeros((self._capacity, t + 1, stack), dtype=index_dtype)
            self._num_frames = np.zeros(self._capacity, dtype=np.int32)
            self._overflow: dict[int, np.ndarray] = {}
        else:
            self._obs = np.empty((self._capacity, *obs_spec.shape), dtype=self._obs_dtype)

        # Every other field: fixed-shape ones get a preallocated [capacity, ...] array, ones with
        # a free dimension (truncated_obs: rare, variable count) live in a per-slot side dict.
        self._fixed: dict[str, np.ndarray] = {}
        self._variable: dict[str, dict[int, np.ndarray]] = {}
        for name, fspec in fields.items():
            if name == "obs":
                continue
            if None in fspec.shape:
                self._variable[name] = {}
                continue
            dtype = fspec.dtype
            if name == "action":
                # exact: validate() guarantees 0 <= action < num_actions
                dtype = np.min_scalar_type(max(spec.num_actions - 1, 0))
            self._fixed[name] = np.zeros((self._capacity, *fspec.shape), dtype=dtype)

        self._header = {name: np.zeros(self._capacity, dtype=np.int64) for name in _INT_HEADER}
        self._run_id_index = np.zeros(self._capacity, dtype=np.int32)
        self._run_ids: list[str] = []
        self._run_id_lookup: dict[str, int] = {}
        self._push_id = np.full(self._capacity, -1, dtype=np.int64)

        self._size = 0
        self._next = 0
        self._pushes = 0
        self._samples = 0
        self._priority_updates = 0
        self._stale_updates = 0
        self._dedup_overflows = 0
        self._stored_frames = 0  # sum of _num_frames over stored de-duplicated slots
        self._last_unique_fraction = 0.0

    # ----------------------------------------------------------------------------------- sizes

    @property
    def capacity(self) -> int:
        """Maximum number of unrolls stored."""
        return self._capacity

    def __len__(self) -> int:
        """Number of unrolls stored now (<= capacity)."""
        return self._size

    @staticmethod
    def estimate_bytes(spec: TrajectorySpec, capacity: int) -> int:
        """Bytes the storage of ``capacity`` unrolls takes when full (no dedup overflows).

        Counts the frame store (or plain obs), the index table, every fixed field at its
        storage dtype, the per-slot header and the sum tree; excludes the rare side dicts.
        """
        t = spec.unroll_length
        obs_dtype = np.dtype(spec.obs_dtype)
        if len(spec.obs_shape) == 3:
            stack = spec.obs_shape[0]
            budget = t + stack
            per = budget * math.prod(spec.obs_shape[1:]) * obs_dtype.itemsize
            per += (t + 1) * stack * np.min_scalar_type(budget - 1).itemsize + 4
        else:
            per = (t + 1) * math.prod(spec.obs_shape) * obs_dtype.itemsize
        for name, fspec in spec.fields.items():
            if name == "obs" or None in fspec.shape:
                continue
            dtype = fspec.dtype
            if name == "action":
                dtype = np.min_scalar_type(max(spec.num_actions - 1, 0))
            per += math.prod(fspec.shape) * np.dtype(dtype).itemsize
        per += 8 * len(_INT_HEADER) + 4 + 8  # header, run id index, push id
        tree = 2 * 2 * 8 * (1 << max(0, (capacity - 1).bit_length()))
        return per * capacity + tree

    # ------------------------------------------------------------------------------ priorities

    def _to_stored(self, raw: np.ndarray) -> np.ndarray:
        """(p + eps)^alpha: the value kept in the tree for raw priority p (Sec. 3.3)."""
        return (raw + self.eps) ** self.alpha

    def beta_at(self, progress: float) -> float:
        """IS exponent annealed linearly from ``beta`` at progress 0 to 1 at progress 1.

        Schaul et al. 2016, Sec. 3.4 (annealing beta to 1 by the end of learning makes the
        updates unbiased when it matters most). ``progress`` is e.g. env frames / frame budget;
        it is clipped to [0, 1].

        Raises:
            ValueError: ``progress`` is not finite.
        """
        if not math.isfinite(progress):
            raise ValueError(f"progress: must be finite, got {progress}")
        p = min(1.0, max(0.0, float(progress)))
        return self.beta + (1.0 - self.beta) * p

    def update_priorities(
        self,
        indices: np.ndarray | Sequence[int],
        priorities: np.ndarray | Sequence[float],
        push_ids: np.ndarray | Sequence[int] | None = None,
    ) -> int:
        """Set the priorities of sampled unrolls from raw values (e.g. mean |vs - V|).

        Stores ``(p + eps)^alpha`` (Sec. 3.3). With ``push_ids`` (from :class:`ReplaySample`),
        entries whose slot was overwritten by a newer push since sampling are skipped.
        Repeated indices: the last value wins.

        Args:
            indices: [n] int slots, each in [0, len(self)).
            priorities: [n] raw priorities, finite and >= 0.
            push_ids: optional [n] int64 push numbers of the sampled unrolls.

        Returns:
            The number of priorities applied (n minus stale entries).

        Raises:
            ValueError: lengths differ (names the argument), an index out of range, or a
                priority negative or not finite.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"indices: expected a 1-D integer array, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        pri = np.asarray(priorities, dtype=np.float64)
        if pri.shape != idx.shape:
            raise ValueError(f"priorities: expected {idx.size} values, got shape {pri.shape}")
        check_priorities(pri, "priorities")
        if idx.size and (idx.min() < 0 or idx.max() >= self._size):
            raise ValueError(f"indices: must lie in [0, {self._size}) (stored unrolls)")
        if push_ids is not None:
            pid = np.asarray(push_ids, dtype=np.int64)
            if pid.shape != idx.shape:
                raise ValueError(f"push_ids: expected {idx.size} values, got shape {pid.shape}")
            fresh = self._push_id[idx] == pid
            self._stale_updates += int(idx.size - fresh.sum())
            idx, pri = idx[fresh], pri[fresh]
        self._tree.update(idx, self._to_stored(pri))
        self._priority_updates += int(idx.size)
        return int(idx.size)

    # ------------------------------------------------------------------------------------ push

    def _dedup_table(self, obs: np.ndarray) -> tuple[list[int], np.ndarray] | None:
        """Unique frames of ``obs`` [T+1, S, H, W] and the (T+1, S) table that rebuilds it.

        Returns ``(positions, table)``, positions being flat ``t * S + k`` indices of the frames
        to keep, in order, or None when more than the frame budget would be needed.
        """
        steps, stack = obs.shape[0], obs.shape[1]
        words = obs.reshape(steps, stack, -1).view(np.uint8)
        if words.shape[-1] % 8 == 0:
            words = words.view(np.uint64)  # 8x fewer elements to compare
        # Bytes, not values, are compared: float -0.0 == 0.0 would be merged and not round-trip.
        # shifted[t - 1, k]: obs[t][k] == obs[t - 1][k + 1], the stack moved on by one frame.
        shifted = (words[1:, :-1] == words[:-1, 1:]).all(axis=-1)
        # Only rows that did not simply move on (the first, resets, odd stacks) need the
        # within-stack comparison, which keeps the usual push to one pass over the frames.
        irregular = np.concatenate(([0], np.flatnonzero(~shifted.all(axis=1)) + 1))
        # repeated[t][k - 1]: obs[t][k] == obs[t][k - 1], a reset stack repeats its first frame
        repeated = dict(
            zip(
                irregular.tolist(),
                (words[irregular, 1:] == words[irregular, :-1]).all(axis=-1).tolist(),
            )
        )
        shifted_rows = shifted.tolist()
        budget = self._frame_budget
        table: list[list[int]] = []
        positions: list[int] = []
        prev: list[int] = []
        for t in range(steps):
            same = repeated.get(t)
            if same is None:  # regular step: stack-1 frames shared, the newest one is new
                if len(positions) == budget:
                    return None
                row = [*prev[1:], len(positions)]
                positions.append(t * stack + stack - 1)
            else:
                row = [0] * stack
                for k in range(stack):
                    if t and k < stack - 1 and shifted_rows[t - 1][k]:
                        row[k] = prev[k + 1]
                    elif k and same[k - 1]:
                        row[k] = row[k - 1]
                    else:
                        if len(positions) == budget:
                            return None
                        row[k] = len(positions)
                        positions.append(t * stack + k)
            table.append(row)
            prev = row
        return positions, np.asarray(table)

    def push(self, traj: Trajectory, priority: float | None = None) -> int:
        """Store a copy of ``traj``; every call stores and counts one unroll.

        Args:
            traj: an unroll matching ``spec`` (validated here).
            priority: raw priority (stored as ``(p + eps)^alpha``); None gives the maximum
                stored priority, 1.0 when the replay is empty (Algorithm 1, line 6).

        Returns:
            The slot written, in [0, capacity). When full, the oldest unroll is evicted.

        Raises:
            ProtocolError: (a ValueError) ``traj`` does not match the spec; names the field.
            ValueError: ``priority`` negative or not finite.
        """
        self.spec.validate(traj)
        if priority is None:
            stored = self._tree.max if self._size else 1.0
        else:
            raw = np.asarray(priority, dtype=np.float64)
            if raw.ndim != 0:
                raise ValueError(f"priority: expected a scalar, got shape {raw.shape}")
            check_priorities(raw, "priority")
            stored = float(self._to_stored(raw))

        slot = self._next
        self._evict(slot)
        if self._dedup:
            obs = np.ascontiguousarray(traj.obs)
            found = self._dedup_table(obs)
            if found is None:
                self._overflow[slot] = obs.copy()
                self._dedup_overflows += 1
            else:
                positions, table = found
                n = len(positions)
                flat = obs.reshape(-1, *obs.shape[2:])
                np.take(flat, positions, axis=0, out=self._frames[slot, :n])
                self._frame_index[slot] = table
                self._num_frames[slot] = n
                self._stored_frames += n
        else:
            self._obs[slot] = traj.obs
        for name, store in self._fixed.items():
            store[slot] = getattr(traj, name)
        for name, side in self._variable.items():
            value = getattr(traj, name)
            if len(value):
                side[slot] = np.array(value, copy=True)
        for name, store in self._header.items():
            store[slot] = getattr(traj, name)
        run_index = self._run_id_lookup.get(traj.run_id)
        if run_index is None:
            run_index = self._run_id_lookup[traj.run_id] = len(self._run_ids)
            self._run_ids.append(traj.run_id)
        self._run_id_index[slot] = run_index
        self._push_id[slot] = self._pushes

        self._tree.update(slot, stored)
        self._pushes += 1
        self._next = (slot + 1) % self._capacity
        self._size = min(self._size + 1, self._capacity)
        return slot

    def _evict(self, slot: int) -> None:
        """Forget the side data and frame count of whatever ``slot`` holds."""
        if slot >= self._size:
            return
        for side in self._variable.values():
            side.pop(slot, None)
        if self._dedup:
            self._overflow.pop(slot, None)
            self._stored_frames -= int(self._num_frames[slot])
            self._num_frames[slot] = 0

    # ---------------------------------------------------------------------------------- sample

    def sample(self, batch_size: int, beta: float | None = None) -> ReplaySample:
        """Draw ``batch_size`` unrolls with probability P(i) (stratified proportional).

        Segment j of ``batch_size`` equal segments of the total priority contributes one
        uniform prefix sum (Schaul et al. 2016, App. B.2.1), found in the sum tree.

        Args:
            batch_size: n >= 1 (may exceed ``len(self)``; slots then repeat).
            beta: IS exponent in [0, 1]; None uses ``self.beta``.

        Returns:
            A :class:`ReplaySample`.

        Raises:
            ValueError: the replay is empty, ``batch_size`` < 1 or ``beta`` outside [0, 1].
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size: expected an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        beta = self.beta if beta is None else float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta: must lie in [0, 1], got {beta}")
        if self._size == 0:
            raise ValueError("sample: the replay is empty; push unrolls first")
        total = self._tree.total
        segment = total / batch_size
        prefix = (np.arange(batch_size, dtype=np.float64) + self._rng.random(batch_size)) * segment
        indices = self._tree.find(prefix)
        probabilities = self._tree.get(indices) / total
        # (N * P(i))^-beta normalised by the batch max, Sec. 3.4; computed in float64
        weights = (self._size * probabilities) ** -beta
        weights = (weights / weights.max()).astype(np.float32)
        self._samples += batch_size
        self._last_unique_fraction = len(np.unique(indices)) / batch_size
        return ReplaySample(
            indices=indices,
            trajectories=self._gather(indices),
            weights=weights,
            probabilities=probabilities,
            push_ids=self._push_id[indices].copy(),
        )

    def get(self, indices: np.ndarray | Sequence[int]) -> list[Trajectory]:
        """Reconstruct the unrolls stored at ``indices`` (no sampling, no counters).

        Raises:
            ValueError: an index outside [0, len(self)).
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"indices: expected a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self._size):
            raise ValueError(f"indices: must lie in [0, {self._size}) (stored unrolls)")
        return self._gather(idx.astype(np.int64, copy=False))

    def _gather(self, indices: np.ndarray) -> list[Trajectory]:
        """Trajectories for ``indices``: one batched gather per field, then per-row views."""
        fields = self.spec.fields
        if self._dedup:
            # [n, T+1, S, H, W] in one fancy-indexing pass over the frame store
            obs = self._frames[indices[:, None, None], self._frame_index[indices]]
            for row, slot in enumerate(indices.tolist()):
                full = self._overflow.get(slot)
                if full is not None:
                    obs[row] = full
        else:
            obs = self._obs[indices]
        arrays = {
            name: store[indices].astype(fields[name].dtype, copy=False)
            for name, store in self._fixed.items()
        }
        out = []
        for row, slot in enumerate(indices.tolist()):
            variable = {}
            for name, side in self._variable.items():
                value = side.get(slot)
                if value is None:
                    shape = tuple(0 if d is None else d for d in fields[name].shape)
                    value = np.zeros(shape, dtype=fields[name].dtype)
                else:
                    value = value.copy()  # callers may modify what they get
                variable[name] = value
            out.append(
                Trajectory(
                    actor_id=int(self._header["actor_id"][slot]),
                    run_id=self._run_ids[int(self._run_id_index[slot])],
                    seq=int(self._header["seq"][slot]),
                    env_index=int(self._header["env_index"][slot]),
                    obs=obs[row],
                    # value[row, ...]: a 0-d array (not a numpy scalar) for per-unroll fields
                    **{name: value[row, ...] for name, value in arrays.items()},
                    **variable,
                    episodes=[],
                )
            )
        return out

    # --------------------------------------------------------------------------------- metrics

    def metrics(self) -> dict[str, float]:
        """Scalar figures for logging, keys prefixed ``replay/``.

        - ``fill_rate``: len / capacity; ``size``: unrolls stored.
        - ``pushes``: unrolls pushed since creation (including evicted ones).
        - ``samples``: unrolls sampled (batch size x sample calls).
        - ``unique_fraction``: distinct slots / batch size of the last sample (0 before any).
        - ``priority_mean``, ``priority_max``: stored ``(p + eps)^alpha`` over stored unrolls.
        - ``priority_updates``, ``stale_updates``: priorities applied, and skipped because the
          unroll had been evicted since it was sampled.
        - ``dedup_overflows``: pushes whose observations exceeded the frame budget and were
          stored whole; ``overflow_slots``: such unrolls stored now.
        - ``frames_per_unroll``: mean unique frames per de-duplicated stored unroll.
        """
        size = self._size
        dedup_slots = size - len(self._overflow) if self._dedup else 0
        return {
            "replay/fill_rate": size / self._capacity,
            "replay/size": float(size),
            "replay/pushes": float(self._pushes),
            "replay/samples": float(self._samples),
            "replay/unique_fraction": self._last_unique_fraction,
            "replay/priority_mean": self._tree.total / size if size else 0.0,
            "replay/priority_max": self._tree.max,
            "replay/priority_updates": float(self._priority_updates),
            "replay/stale_updates": float(self._stale_updates),
            "replay/dedup_overflows": float(self._dedup_overflows),
            "replay/overflow_slots": float(len(self._overflow)) if self._dedup else 0.0,
            "replay/frames_per_unroll": self._stored_frames / dedup_slots if dedup_slots else 0.0,
        }

    # ---------------------------------------------------------------------------- state dicts

    def _storage(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self._dedup:
            out["frames"] = self._frames
            out["frame_index"] = self._frame_index
            out["num_frames"] = self._num_frames
        else:
            out["obs"] = self._obs
        for name, store in self._fixed.items():
            out[f"field/{name}"] = store
        for name, store in self._header.items():
            out[f"header/{name}"] = store
        out["run_id_index"] = self._run_id_index
        out["push_id"] = self._push_id
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as numpy arrays and plain values.

        Large storage arrays are returned as views of the live buffers (they can be GBs);
        save them before pushing again. Side dicts are flattened to ``slots``/``counts``/
        ``rows`` arrays. No objects are pickled.
        """
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "unroll_length": self.spec.unroll_length,
            "obs_shape": list(self.spec.obs_shape),
            "obs_dtype": str(np.dtype(self.spec.obs_dtype)),
            "num_actions": self.spec.num_actions,
            "capacity": self._capacity,
            "alpha": self.alpha,
            "beta": self.beta,
            "eps": self.eps,
            "size": self._size,
            "next": self._next,
            "pushes": self._pushes,
            "samples": self._samples,
            "priority_updates": self._priority_updates,
            "stale_updates": self._stale_updates,
            "dedup_overflows": self._dedup_overflows,
            "last_unique_fraction": self._last_unique_fraction,
            "run_ids": list(self._run_ids),
            "rng_state": self._rng.bit_generator.state,
            "priorities": self._tree.priorities.copy(),
        }
        for key, array in self._storage().items():
            state[f"storage/{key}"] = array
        sides = dict(self._variable)
        if self._dedup:
            sides["overflow_obs"] = self._overflow
        for name, side in sides.items():
            slots = sorted(side)
            template = self.spec.fields["obs" if name == "overflow_obs" else name]
            rest = template.shape[1:]
            state[f"side/{name}/slots"] = np.asarray(slots, dtype=np.int64)
            state[f"side/{name}/counts"] = np.asarray([len(side[s]) for s in slots], np.int64)
            state[f"side/{name}/rows"] = (
                np.concatenate([side[s] for s in slots])
                if slots
                else np.zeros((0, *rest), dtype=template.dtype)
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (copied in; same spec and capacity).

        Raises:
            ValueError: a different version, spec, capacity, or array shapes/dtypes.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state: version {state.get('version')} != {STATE_VERSION}")
        expect = {
            "unroll_length": self.spec.unroll_length,
            "obs_shape": list(self.spec.obs_shape),
            "obs_dtype": str(np.dtype(self.spec.obs_dtype)),
            "num_actions": self.spec.num_actions,
            "capacity": self._capacity,
        }
        for key, want in expect.items():
            got = list(state[key]) if key == "obs_shape" else state[key]
            if got != want:
                raise ValueError(f"state[{key!r}]: expected {want}, got {got}")
        storage = self._storage()
        for key, array in storage.items():
            src = np.asarray(state[f"storage/{key}"])
            if src.shape != array.shape or src.dtype != array.dtype:
                raise ValueError(
                    f"state['storage/{key}']: expected {array.dtype}{array.shape}, "
                    f"got {src.dtype}{src.shape}"
                )
        priorities = np.asarray(state["priorities"], dtype=np.float64)
        self._tree.set_all(priorities)  # validates before anything else is overwritten
        for key, array in storage.items():
            np.copyto(array, state[f"storage/{key}"])
        self.alpha = float(state["alpha"])
        self.beta = float(state["beta"])
        self.eps = float(state["eps"])
        self._size = int(state["size"])
        self._next = int(state["next"])
        self._pushes = int(state["pushes"])
        self._samples = int(state["samples"])
        self._priority_updates = int(state["priority_updates"])
        self._stale_updates = int(state["stale_updates"])
        self._dedup_overflows = int(state["dedup_overflows"])
        self._last_unique_fraction = float(state["last_unique_fraction"])
        self._run_ids = [str(r) for r in state["run_ids"]]
        self._run_id_lookup = {r: i for i, r in enumerate(self._run_ids)}
        self._rng.bit_generator.state = state["rng_state"]
        sides = dict(self._variable)
        if self._dedup:
            sides["overflow_obs"] = self._overflow
        for name, side in sides.items():
            side.clear()
            slots = np.asarray(state[f"side/{name}/slots"], dtype=np.int64)
            counts = np.asarray(state[f"side/{name}/counts"], dtype=np.int64)
            rows = np.asarray(state[f"side/{name}/rows"])
            bounds = np.concatenate([[0], np.cumsum(counts)])
            for i, slot in enumerate(slots.tolist()):
                side[slot] = rows[bounds[i] : bounds[i + 1]].copy()
        if self._dedup:
            self._stored_frames = int(self._num_frames[: self._size].sum())
