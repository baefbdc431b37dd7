"""Typed messages that cross process boundaries, and the trajectory layout declared once.

Run by: every process (actors encode unrolls, the learner decodes them; the learner encodes
weights and status, actors and the launcher decode them).
Owns: ``PROTOCOL_VERSION``, the message classes, the dtype allow-list and the trajectory field
layout: each array field of :class:`Trajectory` is declared once, with its :class:`Role`, and
:class:`TrajectorySpec` derives every shape and dtype from those declarations; the rollout
buffers, the codec's validation, the learner's batch and its slicing derive from the spec. Also
the previous-action rule (:func:`following_action`) that actor, learner and evaluation share.

Each message is a frozen dataclass. Fields annotated ``np.ndarray`` travel as raw array frames;
every other field travels in the msgpack header and must be a plain scalar, string or a list of
such. Nothing is ever pickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

PROTOCOL_VERSION = 4
"""Bumped on any incompatible change of a message or of the trajectory layout."""

ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"uint8", "int32", "int64", "float16", "float32", "bool"}
)
"""Array dtypes accepted on the wire (numpy names). Anything else, 'O' above all, is rejected."""


class ProtocolError(ValueError):
    """A message failed validation. ``field`` names the offending field, ``reason`` says why.

    ``reason`` is a short stable token (e.g. ``bad_shape``) used as the rejection counter key.
    ``message_type`` is the ``TYPE`` of the message being decoded when its header named a known
    type before the error (so a receiver can settle the credit of an unreadable unroll), else
    None.
    """

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        self.field = field
        self.reason = reason
        self.detail = detail
        self.message_type: str | None = None
        super().__init__(f"{field}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class ArraySpec:
    """Shape and dtype of one array field. ``None`` in ``shape`` means any length."""

    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]

    def check(self, name: str, array: np.ndarray) -> None:
        """Raise :class:`ProtocolError` naming ``name`` unless ``array`` matches this spec."""
        if array.dtype != self.dtype:
            raise ProtocolError(name, "bad_dtype", f"expected {self.dtype}, got {array.dtype}")
        if len(array.shape) != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, array.shape)
        ):
            raise ProtocolError(name, "bad_shape", f"expected {self.shape}, got {array.shape}")


@dataclass(frozen=True)
class ValueLimits:
    """Largest magnitudes a trajectory's float values may have; the learner rejects any beyond.

    Finite is not enough: one reward of 3e38 passes a finiteness check, overflows the squared
    value loss, and (without these limits) made every later weight NaN. The defaults sit far
    above anything a real policy or env produces (Mario's largest agent-step reward is ~±100,
    a policy's logits stay within ~±50) and far below float32's overflow once squared.

    Attributes:
        reward: max ``|reward|``, raw env units per agent step.
        logit: max ``|behaviour_logits|``.
        core_state: max ``|initial_core_state|``.
        obs: max ``|obs|`` and ``|truncated_obs|`` for float observations (uint8 frames are
            bounded by their dtype).
    """

    reward: float = 1e6
    logit: float = 1e4
    core_state: float = 1e4
    obs: float = 1e6


def check_magnitude(name: str, array: np.ndarray, limit: float) -> None:
    """Raise :class:`ProtocolError` ``name: not_finite`` or ``name: too_large`` unless every
    value of the float ``array`` is finite and within ``[-limit, limit]``."""
    if not array.size:
        return
    if not np.isfinite(array).all():
        raise ProtocolError(name, "not_finite")
    largest = float(np.abs(array).max())
    if largest > limit:
        raise ProtocolError(name, "too_large", f"|value| {largest:.3g} > limit {limit:.3g}")


class Role(StrEnum):
    """Where one array field of an unroll sits in time; its leading dimensions follow.

    - ``STEP`` ``[T, ...]``: one row per agent step.
    - ``STEP_AND_BOOTSTRAP`` ``[T+1, ...]``: one per step plus the one after the last (the
      bootstrap observation).
    - ``UNROLL`` ``[...]``: once per unroll (the state before its first step).
    - ``TRUNCATED_ROWS`` ``[N, ...]``: one row per set ``truncated`` flag, in time order.

    The learner's batch puts the first two time-major (``[T or T+1, B, ...]``), ``UNROLL``
    fields batch-major (``[B, ...]``) and the rows in one table indexed by step.
    """

    STEP = "step"
    STEP_AND_BOOTSTRAP = "step_and_bootstrap"
    UNROLL = "unroll"
    TRUNCATED_ROWS = "truncated_rows"


@dataclass(frozen=True)
class UnrollField:
    """The declaration of one array field of :class:`Trajectory`.

    Attributes:
        role: its place in time (:class:`Role`).
        dtype: numpy dtype name, or None for the run's observation dtype.
        trailing: the shape after the leading dimensions: ``""`` (none), ``"obs"`` (one
            observation), ``"actions"`` (A) or ``"state"`` (the core state).
    """

    role: Role
    dtype: str | None
    trailing: str = ""


def declare(role: Role, dtype: str | None, trailing: str = "") -> dict[str, UnrollField]:
    """The dataclass-field metadata that declares one array field of :class:`Trajectory`."""
    return {"unroll": UnrollField(role, dtype, trailing)}


def following_action[A](action: A, ended: Any, no_action: int) -> A:
    """The previous action of the observation after a step: the one taken, or ``no_action``
    (A, "none") where the step ended the episode, so that observation starts the next one.

    The one rule actor (acting), learner (the batch's inputs) and evaluation share for the
    last-action input (IMPALA's, Espeholt et al. 2018, section 5.1). Element-wise on numpy
    arrays and torch tensors alike.

    Args:
        action: int64 actions of any shape, numpy or torch.
        ended: bool of the same shape and kind: the step terminated or truncated an episode.
        no_action: the "none" index, A.

    Returns:
        int64 of ``action``'s shape and kind.
    """
    return action * ~ended + no_action * ended  # type: ignore[operator]


@dataclass(frozen=True)
class TrajectorySpec:
    """The unroll layout for one run, derived from its config.

    Attributes:
        unroll_length: agent steps T per unroll.
        obs_shape: one observation, e.g. (4, 84, 84) for Mario or (4,) for CartPole.
        obs_dtype: uint8 for Mario frames, float32 for vector observations.
        num_actions: size A of the discrete action set.
        state_shape: one env's recurrent core state (``ActorCritic.state_shape``); ``(0,)``
            for a feed-forward model.
        limits: magnitude bounds :meth:`validate` enforces (:class:`ValueLimits`).
    """

    unroll_length: int
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype[Any]
    num_actions: int
    state_shape: tuple[int, ...] = (0,)
    limits: ValueLimits = ValueLimits()

    @classmethod
    def for_run(cls, config: Any, model: Any, obs_dtype: np.dtype | type | str) -> TrajectorySpec:
        """The layout of one run, the same in actor, learner and replay.

        Args:
            config: the run's ``configs.schema.Config`` (``actor.unroll_length`` and the
                learner's ``max_abs_*`` limits are read; duck-typed, so the wire imports no
                config).
            model: the run's ``models.ActorCritic`` (``obs_shape``, ``num_actions``,
                ``state_shape`` are read).
            obs_dtype: one observation's dtype (``envs.observation_spec``).
        """
        lc = config.learner
        return cls(
            config.actor.unroll_length,
            tuple(model.obs_shape),
            np.dtype(obs_dtype),
            int(model.num_actions),
            tuple(model.state_shape),
            ValueLimits(lc.max_abs_reward, lc.max_abs_logit, lc.max_abs_core_state, lc.max_abs_obs),
        )

    @property
    def fields(self) -> dict[str, ArraySpec]:
        """Every array of a :class:`Trajectory` (declaration order), from its declarations.

        The trailing shape is the observation's for ``obs``, ``truncated_obs``, A for
        ``behaviour_logits`` and ``state_shape`` for ``initial_core_state``; the leading one
        follows the field's :class:`Role` (T, T+1, none, or any number of rows).
        """
        t = self.unroll_length
        trailing = {
            "": (),
            "obs": tuple(self.obs_shape),
            "actions": (self.num_actions,),
            "state": tuple(self.state_shape),
        }
        leading: dict[Role, tuple[int | None, ...]] = {
            Role.STEP: (t,),
            Role.STEP_AND_BOOTSTRAP: (t + 1,),
            Role.UNROLL: (),
            Role.TRUNCATED_ROWS: (None,),
        }
        return {
            name: ArraySpec(
                (*leading[decl.role], *trailing[decl.trailing]),
                np.dtype(self.obs_dtype if decl.dtype is None else decl.dtype),
            )
            for name, decl in UNROLL_FIELDS.items()
        }

    @property
    def no_action(self) -> int:
        """The previous-action index of an episode's first step: A, one past the real ones."""
        return self.num_actions

    def empty(self, num_truncated: int = 0) -> dict[str, np.ndarray]:
        """Zero-filled arrays for every field (buffers and test fixtures derive from this)."""
        out = {}
        for name, spec in self.fields.items():
            shape = tuple(num_truncated if d is None else d for d in spec.shape)
            out[name] = np.zeros(shape, dtype=spec.dtype)
        return out

    def validate(self, traj: Trajectory) -> None:
        """Check a decoded trajectory against this run's layout and value ranges.

        Raises:
            ProtocolError: naming the first offending field: wrong shape or dtype, actions
                outside [0, A), rewards, logits, core state or float observations that are
                not finite (``not_finite``) or beyond :attr:`limits` (``too_large``), a
                ``truncated_obs`` count that differs from the number of truncated steps, a
                step both terminated and truncated, an ``initial_last_action`` outside
                [0, A], or a negative ``policy_version``.
        """
        for name, spec in self.fields.items():
            spec.check(name, getattr(traj, name))
        if traj.action.size and (traj.action.min() < 0 or traj.action.max() >= self.num_actions):
            raise ProtocolError(
                "action", "out_of_range", f"actions must be in [0, {self.num_actions})"
            )
        check_magnitude("reward", traj.reward, self.limits.reward)
        check_magnitude("behaviour_logits", traj.behaviour_logits, self.limits.logit)
        if np.dtype(self.obs_dtype).kind == "f":
            check_magnitude("obs", traj.obs, self.limits.obs)
            check_magnitude("truncated_obs", traj.truncated_obs, self.limits.obs)
        if (traj.terminated & traj.truncated).any():
            raise ProtocolError("truncated", "both_terminated_and_truncated")
        n_trunc = int(traj.truncated.sum())
        if traj.truncated_obs.shape[0] != n_trunc:
            raise ProtocolError(
                "truncated_obs", "bad_shape", f"{n_trunc} truncated steps need as many rows"
            )
        check_magnitude("initial_core_state", traj.initial_core_state, self.limits.core_state)
        if not 0 <= int(traj.initial_last_action) <= self.no_action:
            raise ProtocolError(
                "initial_last_action",
                "out_of_range",
                f"must be in [0, {self.no_action}] ({self.no_action} = episode start)",
            )
        if traj.policy_version.size and traj.policy_version.min() < 0:
            raise ProtocolError("policy_version", "out_of_range", "must be >= 0")


@dataclass(frozen=True)
class EpisodeStats:
    """Statistics of one finished episode, reported by the actor that ran it.

    ``episode_return`` is the sum of raw env rewards; ``length`` counts agent steps;
    ``max_x_pos`` is Mario's furthest x position in pixels (0 for other envs); ``stage`` is
    ``"W-S"`` for Mario or the env id otherwise; ``components`` sums each Mario reward
    component (gym-super-mario-bros 9.x ``info["reward_components"]``) over the episode;
    ``restored`` says the episode started from a saved emulator snapshot rather than the
    stage's start (``env.restart_fraction``), and ``greedy`` that its env acted greedily
    (``actor.greedy_envs``); either way it is counted apart from the reported figures.
    """

    episode_return: float
    length: int
    max_x_pos: int = 0
    flag_get: bool = False
    stage: str = ""
    components: dict[str, float] = field(default_factory=dict)
    restored: bool = False
    greedy: bool = False

    def to_wire(self) -> list[Any]:
        """Header representation: a fixed-order list (compact and easy to validate)."""
        return [
            self.episode_return, self.length, self.max_x_pos, self.flag_get, self.stage,
            self.components, self.restored, self.greedy,
        ]  # fmt: skip

    @classmethod
    def from_wire(cls, raw: Any, where: str) -> EpisodeStats:
        """Parse :meth:`to_wire` output, raising :class:`ProtocolError` naming ``where``."""
        if not isinstance(raw, list) or len(raw) != 8:
            raise ProtocolError(where, "bad_episode", "expected an 8-item list")
        ret, length, max_x, flag, stage, components, restored, greedy = raw
        if not isinstance(restored, bool) or not isinstance(greedy, bool):
            raise ProtocolError(where, "bad_episode", "restored and greedy must be bool")
        if not isinstance(components, dict) or len(components) > 16 or not all(
            isinstance(k, str) and len(k) <= 32 and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(v)
            for k, v in components.items()
        ):  # fmt: skip
            raise ProtocolError(where, "bad_episode", "components must map names to numbers")
        if isinstance(ret, bool) or not isinstance(ret, int | float) or not math.isfinite(ret):
            raise ProtocolError(where, "bad_episode", "return must be a finite number")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ProtocolError(where, "bad_episode", "length must be an int >= 0")
        if isinstance(max_x, bool) or not isinstance(max_x, int):
            raise ProtocolError(where, "bad_episode", "max_x_pos must be an int")
        if not isinstance(flag, bool) or not isinstance(stage, str) or len(stage) > 64:
            raise ProtocolError(where, "bad_episode", "flag_get must be bool, stage a short str")
        return cls(
            float(ret), length, max_x, flag, stage,
            {k: float(v) for k, v in components.items()}, restored, greedy,
        )  # fmt: skip


@dataclass(frozen=True)
class GpuStats:
    """One GPU's figures from NVML. Any field is None where the device does not support it.

    Units: ``utilization`` percent (0-100), memory in MiB, ``temperature_c`` degrees Celsius,
    ``power_w`` watts.
    """

    index: int
    name: str
    utilization: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None

    def to_wire(self) -> list[Any]:
        return [
            self.index, self.name, self.utilization, self.memory_used_mb,
            self.memory_total_mb, self.temperature_c, self.power_w,
        ]  # fmt: skip

    @classmethod
    def from_wire(cls, raw: Any, where: str) -> GpuStats:
        """Parse :meth:`to_wire` output, raising :class:`ProtocolError` naming ``where``."""
        if not isinstance(raw, list) or len(raw) != 7:
            raise ProtocolError(where, "bad_gpu", "expected a 7-item list")
        index, name, *numbers = raw
        if isinstance(index, bool) or not isinstance(index, int) or not isinstance(name, str):
            raise ProtocolError(where, "bad_gpu", "index must be an int and name a str")
        for n in numbers:
            if n is not None and (
                isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n)
            ):
                raise ProtocolError(where, "bad_gpu", "figures must be finite numbers or null")
        return cls(index, name, *(None if n is None else float(n) for n in numbers))

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "utilization": self.utilization,
            "memory_used_mb": self.memory_used_mb, "memory_total_mb": self.memory_total_mb,
            "temperature_c": self.temperature_c, "power_w": self.power_w,
        }  # fmt: skip


class Message:
    """Base of every wire message. ``TYPE`` is the header tag that selects the class."""

    TYPE: ClassVar[str]


@dataclass(frozen=True)
class Hello(Message):
    """Actor -> learner on connect (and again after a learner restart): asks for the run's
    config, fresh credits and the current weights. ``policy_version`` is the version the actor
    holds (-1 for none), so a restarted learner numbers its weights above it."""

    TYPE: ClassVar[str] = "hello"
    actor_id: int
    run_id: str
    host: str
    pid: int
    num_envs: int
    policy_version: int = -1


def tagged_run_id(run_token: str, incarnation: str) -> str:
    """A process incarnation's run id (a learner's ``learner_run_id``, an actor's ``run_id``):
    ``<run token>.<incarnation>`` when it belongs to a launcher's run (``--run-token``), else
    the incarnation alone (``incarnation`` has no ``.``)."""
    return f"{run_token}.{incarnation}" if run_token else incarnation


def run_token_of(run_id: str) -> str:
    """The run token a run id carries (:func:`tagged_run_id`), or "" for none."""
    token, dot, _ = run_id.rpartition(".")
    return token if dot else ""


def in_run(run_id: str, run_token: str) -> bool:
    """Whether a peer with ``run_id`` may take part in the run with ``run_token``: a process
    without a token on either side (started by hand, ``--actors-only``) joins whatever its
    endpoint reaches; two tokens must be equal. Why: two launchers on the same ports must not
    merge, so a launcher's actors and learner ignore another run's."""
    theirs = run_token_of(run_id)
    return not run_token or not theirs or theirs == run_token


@dataclass(frozen=True)
class Welcome(Message):
    """Learner -> one actor, in reply to :class:`Hello`; followed at once by :class:`Weights`.

    ``config_toml`` is the learner's resolved config, so a remote actor needs no config file.
    ``broadcast_endpoint`` is where the learner publishes weights and status; ``credits`` is the
    number of unrolls the actor may send before it waits for a :class:`Credit`.
    """

    TYPE: ClassVar[str] = "welcome"
    learner_run_id: str
    config_toml: str
    broadcast_endpoint: str
    policy_version: int
    credits: int


@dataclass(frozen=True)
class Credit(Message):
    """Learner -> one actor: permission to send ``unrolls`` more trajectories.

    Credit-based flow control bounds the unrolls in flight per actor (sent but not yet trained
    on, dropped or rejected) whatever the transport buffers hold, which bounds both memory and
    policy lag when the learner is slower than the actors.
    """

    TYPE: ClassVar[str] = "credit"
    unrolls: int


@dataclass(frozen=True)
class Trajectory(Message):
    """Actor -> learner: one unroll of one env of T agent steps.

    ``seq`` counts this actor incarnation's unrolls from 0 (duplicate detection);
    ``run_id`` identifies the incarnation; ``episodes`` lists episodes that ended in it.

    The array fields below are the unroll layout's only declaration (:data:`UNROLL_FIELDS`);
    :meth:`TrajectorySpec.fields` gives their shapes and dtypes for one run:

    - ``obs`` [T+1, *obs_shape]: observation before each step, plus the one after the last.
    - ``action`` [T] int64: action taken by the behaviour policy.
    - ``reward`` [T] float32: raw env reward (summed over the frame skip).
    - ``terminated`` [T] bool: the episode ended at this step (zeroes the bootstrap).
    - ``truncated`` [T] bool: the episode was cut at this step (bootstraps from
      ``truncated_obs``); ``obs[t + 1]`` is then the next episode's first observation.
    - ``behaviour_logits`` [T, A] float32: logits of the behaviour policy.
    - ``policy_version`` [T] int64: learner version of the weights that chose each action.
    - ``truncated_obs`` [N, *obs_shape]: the final observation of each truncated step, in
      time order (N = number of set ``truncated`` flags, usually 0).
    - ``initial_core_state`` [*state_shape] float32: the recurrent core state before the
      unroll's first step (the learner re-runs the core from it, resetting it wherever an
      episode ends).
    - ``initial_last_action`` [] int64: the action taken before ``obs[0]``, or
      :attr:`TrajectorySpec.no_action` (= A) when ``obs[0]`` starts an episode. Later steps'
      previous actions follow from ``action`` and the episode ends (:func:`following_action`),
      so only this one travels; a model with ``model.last_action`` takes them as input.
    """

    TYPE: ClassVar[str] = "trajectory"
    actor_id: int
    run_id: str
    seq: int
    env_index: int
    obs: np.ndarray = field(metadata=declare(Role.STEP_AND_BOOTSTRAP, None, "obs"))
    action: np.ndarray = field(metadata=declare(Role.STEP, "int64"))
    reward: np.ndarray = field(metadata=declare(Role.STEP, "float32"))
    terminated: np.ndarray = field(metadata=declare(Role.STEP, "bool"))
    truncated: np.ndarray = field(metadata=declare(Role.STEP, "bool"))
    behaviour_logits: np.ndarray = field(metadata=declare(Role.STEP, "float32", "actions"))
    policy_version: np.ndarray = field(metadata=declare(Role.STEP, "int64"))
    truncated_obs: np.ndarray = field(metadata=declare(Role.TRUNCATED_ROWS, None, "obs"))
    initial_core_state: np.ndarray = field(metadata=declare(Role.UNROLL, "float32", "state"))
    initial_last_action: np.ndarray = field(metadata=declare(Role.UNROLL, "int64"))
    episodes: list[EpisodeStats] = field(default_factory=list)


UNROLL_FIELDS: dict[str, UnrollField] = {
    f.name: f.metadata["unroll"] for f in fields(Trajectory) if "unroll" in f.metadata
}
"""Name -> declaration of every array field of :class:`Trajectory`, in declaration order."""


def fields_with(*roles: Role) -> tuple[str, ...]:
    """Names of the unroll's array fields whose role is one of ``roles``, in declaration order."""
    return tuple(name for name, decl in UNROLL_FIELDS.items() if decl.role in roles)


@dataclass(frozen=True)
class Weights(Message):
    """Learner -> actors: all model parameters flattened into one float32 vector.

    ``layout`` lists ``[name, shape]`` in state-dict order; ``flat`` is their concatenation.
    """

    TYPE: ClassVar[str] = "weights"
    policy_version: int
    learner_run_id: str
    layout: list[list[Any]]
    flat: np.ndarray


@dataclass(frozen=True)
class LearnerStatus(Message):
    """Learner -> launcher/actors, about once a second: progress figures and liveness.

    Counts are totals since the run started (they survive resume). ``env_fps`` is env frames
    consumed per second over the last interval. Episode means cover the last 100 episodes
    (0 when there are none yet); ``flag_rate`` is the fraction of them that reached the flag.
    ``done`` is set on the last status before a clean exit. ``hints`` names the training hints
    firing now (:mod:`learner.hints`; texts in its log).
    """

    TYPE: ClassVar[str] = "learner_status"
    learner_run_id: str
    policy_version: int
    updates: int
    env_frames: int
    total_env_frames: int
    env_fps: float
    episodes: int
    mean_return: float
    mean_x_pos: float
    max_x_pos: int
    flags: int
    accepted: int
    rejected: int
    dropped_stale: int
    duplicates: int
    done: bool = False
    actors_alive: int = 0
    actors_stale: int = 0
    actors_dead: int = 0
    fleet_env_fps: float = 0.0
    mean_policy_lag: float | None = None
    gpu_utilization: float | None = None
    hints: list[str] = field(default_factory=list)
    flag_rate: float = 0.0


@dataclass(frozen=True)
class Heartbeat(Message):
    """Every process -> the learner about once a second; republished on the heartbeat stream.

    Attributes:
        role: ``learner``, ``actor``, ``launcher`` or ``eval``.
        id: the process's id within its role (e.g. the actor id).
        host, pid, run_id: where it runs and which incarnation it is.
        uptime_s: seconds since the process started.
        cpu_percent: process CPU use since the previous heartbeat (100 = one core), psutil.
        rss_mb: resident memory in MiB; threads: OS thread count (psutil).
        env_fps: env frames per second stepped (actors) or consumed (learner).
        updates_per_s: learner updates per second (learner only, else 0).
        policy_version: version of the weights it holds; policy_lag: learner's version minus
            it (actors; None where unknown).
        queue_depth: unrolls queued (learner) or waiting to be sent (actor).
        credits: unrolls an actor may still send; for the learner, credits outstanding.
        progress_age_s: seconds since its main loop last made progress.
        stalled: the stall watchdog fired and wrote ``stall_file`` (a path, else "").
        counters: cumulative counts (e.g. ``unrolls_sent``, ``accepted``, ``rejected``).
        gpu: per-GPU figures, or None where there is no NVIDIA driver.
        state: ``alive``, ``stale`` or ``dead``, set by the learner when it republishes.
    """

    TYPE: ClassVar[str] = "heartbeat"
    role: str
    id: str
    host: str
    pid: int
    run_id: str
    uptime_s: float
    cpu_percent: float
    rss_mb: float
    threads: int
    env_fps: float
    updates_per_s: float
    policy_version: int
    policy_lag: float | None
    queue_depth: int
    credits: int
    progress_age_s: float
    stalled: bool
    stall_file: str
    counters: dict[str, float]
    gpu: list[GpuStats] | None
    state: str = "alive"

    @property
    def key(self) -> str:
        """``role:id``, the peer's identity in the fleet view."""
        return f"{self.role}:{self.id}"


@dataclass(frozen=True)
class Rejoin(Message):
    """Learner -> an actor it does not know (it restarted, or declared the actor dead):
    say hello again to get fresh credits; unrolls begun for an older learner are dropped."""

    TYPE: ClassVar[str] = "rejoin"
    learner_run_id: str


def to_json(message: Message) -> dict[str, Any]:
    """A header-only message as a JSON-ready dict with its ``type`` (for jsonl and monitors).

    Raises:
        TypeError: the message carries arrays (trajectories and weights are not for JSON).
    """
    out: dict[str, Any] = {"type": message.TYPE}
    for f in fields(message):  # type: ignore[arg-type]
        value = getattr(message, f.name)
        if isinstance(value, np.ndarray):
            raise TypeError(f"{message.TYPE}.{f.name}: arrays are not JSON")
        if isinstance(value, list):
            value = [v.as_dict() if hasattr(v, "as_dict") else v for v in value]
        out[f.name] = value
    return out


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Welcome, Credit, Rejoin, Trajectory, Weights, LearnerStatus, Heartbeat)
}
