"""Unroll collection for K environments stepped in lockstep: pure, no sockets, no model.

Run by: actor processes (and the actor throughput benchmark).
Owns: the per-env unroll buffers, the episode boundary bookkeeping (terminated vs truncated,
final observations of truncated episodes, episode statistics) and cutting them into
:class:`~protocol.messages.Trajectory` messages of T steps, each with T+1 observations; and the
behaviour policy of greedy envs (``actor.greedy_envs``, :func:`greedy_behaviour`).

Buffers are laid out env-major ``[K, T+1, ...]`` so each env's unroll is one contiguous block
sent without a copy. Fresh buffers are allocated per unroll because ZeroMQ may still be reading
the previous ones (zero-copy send); the last observation is carried over as the next first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol.messages import (
    EpisodeStats,
    Role,
    Trajectory,
    TrajectorySpec,
    fields_with,
    following_action,
)

log = logging.getLogger(__name__)

#: Logit gap of a greedy env's behaviour policy: the softmax puts 1 - (A - 1) e^-30 on the argmax,
#: which is 1.0 in float32, so V-trace's ``log mu(a)`` is exactly 0 (a point mass), while every
#: logit stays finite and small (the learner rejects non-finite or huge ones).
GREEDY_LOGIT_GAP = 30.0


def greedy_behaviour(
    action: np.ndarray, logits: np.ndarray, num_greedy: int
) -> tuple[np.ndarray, np.ndarray]:
    """Make envs ``0 .. num_greedy - 1`` act greedily, and record the policy they really used.

    The training-time analogue of Ape-X's per-actor exploration ladder (Horgan et al. 2018,
    section 4: the least exploring actors are near greedy): a few envs follow the argmax of
    the current policy, so training reaches the states a greedy evaluation reaches (a trap
    such as holding A at a pipe, which sampled play escapes by chance), and V-trace
    (Espeholt et al. 2018, eq. 1) corrects for their behaviour policy, a point mass, through
    ``log_rhos = log pi(a) - log mu(a) = log pi(a)``.

    Args:
        action: [K] int64 actions sampled from ``logits``.
        logits: [K, A] float32 logits of the current policy.
        num_greedy: how many leading envs act greedily (0 <= num_greedy <= K).

    Returns:
        ``(action, behaviour_logits)``: new arrays; rows ``< num_greedy`` hold the argmax and
        the point mass's logits (0 there, ``-GREEDY_LOGIT_GAP`` elsewhere), the others are
        copies of the inputs.

    Raises:
        ValueError: ``num_greedy`` outside ``[0, K]``.
    """
    if not 0 <= num_greedy <= len(action):
        raise ValueError(f"num_greedy: must be in [0, {len(action)}], got {num_greedy}")
    action, logits = np.array(action, copy=True), np.array(logits, copy=True)
    if num_greedy:
        best = logits[:num_greedy].argmax(axis=-1)
        action[:num_greedy] = best
        logits[:num_greedy] = -GREEDY_LOGIT_GAP
        logits[np.arange(num_greedy), best] = 0.0
    return action, logits


@dataclass
class StepResult:
    """What K envs returned for one agent step (after autoreset).

    Attributes:
        next_obs: [K, *obs_shape] observation to act on next (a reset one where an episode ended).
        reward: [K] float32 raw env rewards.
        terminated: [K] bool.
        truncated: [K] bool.
        final_obs: env index -> the last observation of an episode that was truncated.
        episodes: env index -> statistics of an episode that ended at this step.
        failed: env indices whose env raised at this step and was rebuilt; their unroll in
            progress must be dropped (:meth:`UnrollCollector.discard`).
    """

    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: dict[int, np.ndarray] = field(default_factory=dict)
    episodes: dict[int, EpisodeStats] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)


class UnrollCollector:
    """Accumulates K parallel unrolls of T steps and emits them as trajectories.

    Usage: :meth:`reset` with the first observations, then per step read :attr:`current_obs`,
    act, and call :meth:`record`; every T steps it returns K trajectories.
    """

    def __init__(self, spec: TrajectorySpec, num_envs: int, actor_id: int, run_id: str) -> None:
        self.spec = spec
        self.num_envs = num_envs
        self.actor_id = actor_id
        self.run_id = run_id
        self.discarded = 0  # unrolls dropped by discard() since this collector was made
        self._t = 0
        self._alloc()

    def _alloc(self) -> None:
        k, fields = self.num_envs, self.spec.fields
        # one [K, T or T+1, ...] buffer per per-step field; the per-unroll fields and the
        # truncated rows are kept apart (one per env, and a list of any length)
        self._buf = {
            name: np.zeros((k, *fields[name].shape), dtype=fields[name].dtype)
            for name in fields_with(Role.STEP, Role.STEP_AND_BOOTSTRAP)
        }
        self._initial_state = np.zeros((k, *self.spec.state_shape), dtype=np.float32)
        self._initial_last_action = np.full(k, self.spec.no_action, dtype=np.int64)
        self._truncated_obs: list[list[np.ndarray]] = [[] for _ in range(k)]
        self._episodes: list[list[EpisodeStats]] = [[] for _ in range(k)]
        self._discarded: set[int] = set()

    def reset(
        self,
        obs: np.ndarray,
        core_state: np.ndarray | None = None,
        last_action: np.ndarray | None = None,
    ) -> None:
        """Start a new unroll. ``obs``: [K, *obs_shape] observations to act on first;
        ``core_state``: [K, *state_shape] each env's core state before that (None = zeros);
        ``last_action``: [K] int64 each env's previous action (None = all episodes start here,
        ``spec.no_action``)."""
        self._alloc()
        self._t = 0
        self._buf["obs"][:, 0] = obs
        if core_state is not None:
            self._initial_state[:] = core_state
        if last_action is not None:
            self._initial_last_action[:] = last_action

    def discard(self, env_index: int) -> None:
        """Drop env ``env_index``'s unroll in progress: it is not emitted (:meth:`record`
        returns the other envs' unrolls), and its next unroll starts afresh. For an env that
        failed mid-unroll; the others keep their unrolls."""
        self._discarded.add(env_index)
        self.discarded += 1

    @property
    def steps(self) -> int:
        """Agent steps recorded so far in the unroll in progress."""
        return self._t

    @property
    def current_last_action(self) -> np.ndarray:
        """[K] int64 action each env took before :attr:`current_obs`; ``spec.no_action`` where
        that observation starts an episode (the learner derives the same from the unroll)."""
        if self._t == 0:
            return self._initial_last_action.copy()
        b, t = self._buf, self._t - 1
        ended = b["terminated"][:, t] | b["truncated"][:, t]
        return following_action(b["action"][:, t], ended, self.spec.no_action)

    @property
    def current_obs(self) -> np.ndarray:
        """[K, *obs_shape] observations to act on now (a strided view; do not keep it)."""
        return self._buf["obs"][:, self._t]

    def record(
        self,
        action: np.ndarray,
        behaviour_logits: np.ndarray,
        policy_version: int,
        result: StepResult,
        core_state: np.ndarray | None = None,
    ) -> list[Trajectory]:
        """Store one step for all K envs.

        Args:
            action: [K] int64 actions taken.
            behaviour_logits: [K, A] float32 logits they were sampled from.
            policy_version: version of the weights that produced them.
            result: what the envs returned.
            core_state: [K, *state_shape] the core state after this step (the next unroll's
                initial state if this step completes one); None for feed-forward models.

        Returns:
            K trajectories when this step completes an unroll (fewer if some were
            discarded), else an empty list.
        """
        b, t = self._buf, self._t
        b["action"][:, t] = action
        b["behaviour_logits"][:, t] = behaviour_logits
        b["policy_version"][:, t] = policy_version
        b["reward"][:, t] = result.reward
        b["terminated"][:, t] = result.terminated
        b["truncated"][:, t] = result.truncated
        b["obs"][:, t + 1] = result.next_obs
        for i, final in sorted(result.final_obs.items()):
            self._truncated_obs[i].append(np.array(final, dtype=self.spec.obs_dtype))
        for i, stats in result.episodes.items():
            self._episodes[i].append(stats)
        for i in sorted(result.failed):
            self.discard(i)
        self._t += 1
        if self._t < self.spec.unroll_length:
            return []
        return self._emit(core_state)

    def _emit(self, core_state: np.ndarray | None) -> list[Trajectory]:
        b = self._buf
        empty_trunc = np.zeros((0, *self.spec.obs_shape), dtype=self.spec.obs_dtype)
        out = []
        for i in range(self.num_envs):
            if i in self._discarded:
                continue
            trunc = self._truncated_obs[i]
            out.append(
                Trajectory(
                    actor_id=self.actor_id,
                    run_id=self.run_id,
                    seq=-1,  # numbered by the sender (see actor.worker.Actor._send)
                    env_index=i,
                    **{name: buf[i] for name, buf in b.items()},
                    truncated_obs=np.stack(trunc) if trunc else empty_trunc,
                    initial_core_state=self._initial_state[i],
                    initial_last_action=self._initial_last_action[i, ...],
                    episodes=list(self._episodes[i]),
                )
            )
        last = b["obs"][:, -1].copy()
        self.reset(last, core_state, self.current_last_action)
        return out


def step_envs(
    envs: list,
    actions: np.ndarray,
    rebuild: Callable[[int], Any] | None = None,
    greedy_envs: int = 0,
) -> StepResult:
    """Step each Gymnasium env once, resetting the ones whose episode ended (same-step reset).

    Args:
        envs: K environments built by :func:`envs.factory.make_env`.
        actions: [K] int64.
        rebuild: ``rebuild(i)`` builds a replacement for env ``i``. When given, an env whose
            ``step`` raises is closed, replaced in ``envs`` and reset, and ``i`` goes to
            ``result.failed`` (its step reads as an episode end with reward 0, so the next
            unroll starts a fresh episode; the unroll in progress must be dropped). Without
            it the exception propagates.
        greedy_envs: envs ``0 .. greedy_envs - 1`` act greedily (:func:`greedy_behaviour`):
            their episodes are marked ``EpisodeStats.greedy``.

    Returns:
        The batched result; a truncated env's last observation goes to ``final_obs`` and a
        finished episode's ``info["episode"]`` dict to ``episodes``.

    Raises:
        Exception: whatever an env raised, without ``rebuild``, or whatever ``rebuild`` or the
            replacement's ``reset`` raises (a replacement that cannot even start is not
            retried here: the actor exits and its supervisor restarts it).

    Stepping a plain list keeps per-env final observations and episode infos explicit and
    avoids merging every info dict into arrays on every step, which Gymnasium's
    ``SyncVectorEnv`` does and which the actor has no use for.
    """
    obs_list, rewards, terms, truncs = [], [], [], []
    result = StepResult(np.empty(0), np.empty(0), np.empty(0), np.empty(0))
    for i, (env, action) in enumerate(zip(envs, actions)):
        try:
            obs, reward, terminated, truncated, info = env.step(int(action))
        except Exception:
            if rebuild is None:
                raise
            log.exception("env %d raised while stepping; rebuilding it in place", i)
            with contextlib.suppress(Exception):  # a broken env may fail to close, too
                env.close()
            envs[i] = rebuild(i)
            obs, _ = envs[i].reset()
            result.failed.add(i)
            obs_list.append(obs)
            rewards.append(0.0)
            terms.append(True)  # an episode boundary: no previous action, a zero core state
            truncs.append(False)
            continue
        if terminated or truncated:
            if truncated and not terminated:
                result.final_obs[i] = np.array(obs)
            ep = info.get("episode")
            if ep is not None:
                result.episodes[i] = EpisodeStats(
                    float(ep["return"]),
                    int(ep["length"]),
                    int(ep.get("max_x_pos", 0)),
                    bool(ep.get("flag_get", False)),
                    str(ep.get("stage", "")),
                    {k: float(v) for k, v in ep.get("components", {}).items()},
                    bool(ep.get("restored", False)),
                    i < greedy_envs,
                )
            obs, _ = env.reset()
        obs_list.append(obs)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated and not terminated)
    result.next_obs = np.stack(obs_list)
    result.reward = np.asarray(rewards, dtype=np.float32)
    result.terminated = np.asarray(terms, dtype=np.bool_)
    result.truncated = np.asarray(truncs, dtype=np.bool_)
    return result
