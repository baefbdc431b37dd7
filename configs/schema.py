"""Typed, documented configuration schema shared by every process.

Run by: the launcher (parses TOML + CLI overrides, writes the resolved config into the run
directory), and the learner and actor processes (which load that resolved file).
Owns: every tunable of a run, its type, default, documentation and allowed range. Each field is
declared once here; the CLI flags (``--section.field VALUE``) are generated from these
declarations, and values are never mutated after parsing (derived values are properties).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import tomli_w

from envs.stages import parse_stages


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range; the message names the field."""


def option(
    default: Any,
    doc: str,
    *,
    choices: tuple[Any, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """Declare a config field with its documentation and validation bounds.

    Args:
        default: default value (immutable; lists are given as tuples).
        doc: one-line documentation shown in ``--help`` and the README table.
        choices: allowed values, if the field is an enumeration.
        ge, gt, le: numeric bounds (``>=``, ``>``, ``<=``).
    """
    meta = {"doc": doc, "choices": choices, "ge": ge, "gt": gt, "le": le}
    return dataclasses.field(default=default, metadata=meta)


def _coerce(path: str, value: Any, typ: type, meta: dict[str, Any]) -> Any:
    """Check ``value`` against ``typ`` and the field's bounds; return it normalised."""
    origin = typing.get_origin(typ)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected a boolean (true/false), got {value!r}")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
    elif typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
    elif origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_type, _) = typing.get_args(typ)
        value = tuple(_coerce(f"{path}[{i}]", v, item_type, {}) for i, v in enumerate(value))
    elif origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{path}: union types are not supported in the schema")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: expected one of {', '.join(map(str, choices))}; got {value!r}")
    for key, ok, word in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
    ):
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{path}: must be {word} {bound}, got {value!r}")
    return value


class Section:
    """Base of every config section: building one in any way (directly, by :func:`from_dict`,
    by ``dataclasses.replace``) checks each field's type and bounds, normalises it (int to
    float, list to tuple), then runs the section's own rules (:meth:`check`).

    Raises:
        ConfigError: naming the first offending ``section.field``.
    """

    SECTION: ClassVar[str]
    """The section's name in TOML and in dotted option paths (``env`` for ``env.id``)."""

    def __post_init__(self) -> None:
        hints = _field_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            old = getattr(self, f.name)
            value = _coerce(f"{self.SECTION}.{f.name}", old, hints[f.name], dict(f.metadata))
            if type(value) is not type(old) or value != old:
                object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules across this section's fields (none here). Raises :class:`ConfigError`."""


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclass(frozen=True)
class RunConfig(Section):
    """What to run and for how long."""

    SECTION: ClassVar[str] = "run"

    seed: int = option(0, "Base random seed; actor i uses seed + 1000 * i.", ge=0)
    total_env_frames: int = option(
        50_000_000, "Frame budget: stop after this many env (NES) frames.", gt=0
    )
    num_actors: int = option(0, "Actor processes to start; 0 = one per spare CPU core.", ge=0)
    log_interval_s: float = option(
        5.0, "Seconds between TensorBoard scalar flushes and progress reports.", gt=0
    )
    checkpoint_interval_s: float = option(
        300.0, "Seconds between periodic checkpoints (a final one is always written).", gt=0
    )
    keep_checkpoints: int = option(3, "How many recent checkpoints to keep on disk.", ge=1)
    max_restarts: int = option(
        5,
        "Restarts of one failed process (actor, learner, eval actor) within "
        "run.restart_window_s before the launcher gives up on the run.",
        ge=0,
    )
    restart_window_s: float = option(
        300.0, "Window over which run.max_restarts is counted (seconds).", gt=0
    )
    wandb_project: str = option(
        "",
        "Mirror the config, scalars and eval videos to this Weights & Biases project; empty = "
        "no mirror. Needs the wandb extra (uv sync --extra wandb).",
    )
    wandb_entity: str = option("", "W&B entity (user or team); empty = W&B's default.")
    wandb_mode: str = option(
        "online",
        "W&B mode: online, offline (files under RUN_DIR/wandb, for wandb sync) or disabled; "
        "the WANDB_MODE environment variable overrides it.",
        choices=("online", "offline", "disabled"),
    )

    @property
    def resolved_num_actors(self) -> int:
        """``num_actors``, or one per CPU core left after the learner's when it is 0."""
        return self.num_actors or max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class EnvConfig(Section):
    """The environment each actor steps."""

    SECTION: ClassVar[str] = "env"

    id: str = option(
        "SuperMarioBros-1-1-v0",
        "Gymnasium env id: SuperMarioBros-W-S-v0 (preprocessed to 4x84x84 uint8) or any "
        "env with a flat vector observation and discrete actions, e.g. CartPole-v1.",
    )
    actions: str = option(
        "simple",
        "Mario JoypadSpace action set (ignored for other envs).",
        choices=("right_only", "simple", "complex"),
    )
    frame_skip: int = option(4, "NES frames per agent step (Mario only; rewards summed).", ge=1)
    frame_stack: int = option(4, "Grayscale frames stacked per observation (Mario only).", ge=1)
    resolution: int = option(84, "Side of the square grayscale observation (Mario only).", ge=16)
    max_episode_steps: int = option(
        0, "Truncate episodes after this many agent steps; 0 = the env's own limit.", ge=0
    )
    stall_steps: int = option(
        0,
        "Mario: end an episode as terminated (no bootstrap) after this many agent steps "
        "without a new best x_pos, so an agent stuck at a pipe stops there (envs/stall.py). "
        "0 = off.",
        ge=0,
    )
    reward_shaping: bool = option(
        False,
        "Mario: replace the env reward (its clipped sum of components) by the weighted sum "
        "of the env's reward components below; the raw env reward is the default.",
    )
    reward_progress: float = option(1.0, "Mario shaping weight: new best x position.")
    reward_time: float = option(1.0, "Mario shaping weight: in-game clock ticking (<= 0).")
    reward_score: float = option(1.0, "Mario shaping weight: in-game score / 100.")
    reward_coins: float = option(1.0, "Mario shaping weight: coins collected (x5).")
    reward_powerup: float = option(1.0, "Mario shaping weight: power-up gained or lost (x5).")
    reward_completion: float = option(1.0, "Mario shaping weight: reaching the flag (+50).")
    reward_death: float = option(1.0, "Mario shaping weight: dying (-25).")

    @property
    def reward_weights(self) -> dict[str, float]:
        """Weight per gym-super-mario-bros 9.x reward component name."""
        return {
            name: getattr(self, f"reward_{name}")
            for name in ("progress", "time", "score", "coins", "powerup", "completion", "death")
        }

    stages: tuple[str, ...] = option(
        (),
        "SMB1 stages each env samples from at every episode start (W-S, W-S..W-S, "
        'world:1,2 or all; e.g. ["1-1", "1-2"]); empty = just env.id.',
    )
    stage_sampling: str = option(
        "uniform",
        "How env.stages are drawn: uniform, or curriculum (weight m + (1 - m) * (1 - recent "
        "clear rate), per env; see envs/curriculum.py).",
        choices=("uniform", "curriculum"),
    )
    curriculum_window: int = option(
        20, "Curriculum: recent episodes per stage behind each clear rate.", ge=1
    )
    curriculum_min_weight: float = option(
        0.1,
        "Curriculum: weight m of an always-cleared stage (a never-cleared one has 1).",
        gt=0,
        le=1,
    )

    restart_fraction: float = option(
        0.0,
        "Mario: fraction of episodes that start from an emulator snapshot the env saved along "
        "the agent's own earlier episodes instead of the stage's start (Go-Explore's restore, "
        "Ecoffet et al. 2021; Backplay, Resnick et al. 2018; envs/restarts.py). Such episodes "
        "are counted apart and never enter the reported flag rate, x figures or curriculum; "
        "evaluation never uses them. 0 = off; at most 0.95, so true-start episodes remain.",
        ge=0,
        le=0.95,
    )
    restart_spacing: int = option(
        64, "Restarts: archive cell width in pixels of x_pos (one snapshot taken per cell).", ge=8
    )
    restart_per_cell: int = option(
        4, "Restarts: newest snapshots kept per cell (first in, first out).", ge=1
    )
    restart_delay_frames: int = option(
        90,
        "Restarts: NES frames Mario must survive after a snapshot before it is kept, so that "
        "doomed states (mid-fall into a pit) never become restart points.",
        ge=0,
    )

    def check(self) -> None:
        if not self.stages:
            return

        try:
            parse_stages(self.stages, "env.stages")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if not self.id.startswith("SuperMarioBros-"):
            raise ConfigError(
                f"env.stages: needs a Super Mario Bros (SMB1) env.id, got {self.id!r}"
            )

    @property
    def resolved_stages(self) -> tuple[str, ...]:
        """``stages`` expanded to ``"W-S"`` names (empty when ``stages`` is)."""
        if not self.stages:
            return ()

        return parse_stages(self.stages, "env.stages")

    @property
    def is_mario(self) -> bool:
        """Whether ``id`` names a Super Mario Bros env (and so gets Mario preprocessing)."""
        return self.id.startswith("SuperMarioBros")

    @property
    def frames_per_step(self) -> int:
        """Env frames per agent step: ``frame_skip`` for Mario, 1 otherwise."""
        return self.frame_skip if self.is_mario else 1


@dataclass(frozen=True)
class ModelConfig(Section):
    """The network shared by actors (inference) and the learner (training)."""

    SECTION: ClassVar[str] = "model"

    torso: str = option(
        "nature",
        "Feature extractor: nature (Mnih et al. 2015 CNN; the default because actor inference "
        "costs ~4% of an env step vs ~19% for impala on one CPU thread), impala (ResNet "
        "16-32-32, Espeholt et al. 2018), or mlp (vector observations).",
        choices=("impala", "nature", "mlp"),
    )
    hidden_size: int = option(256, "Width of the fully connected layer after the torso.", ge=1)
    mlp_layers: int = option(2, "Hidden layers of the mlp torso.", ge=1)
    layer_norm: bool = option(
        False, "LayerNorm after each fully connected torso layer, before its nonlinearity."
    )
    core: str = option(
        "none",
        "Memory between torso and heads: none (feed-forward), lstm, gru, or transformer "
        "(gated transformer-XL, Parisotto et al. 2019, over the last transformer_window steps). "
        "Actors then carry a per-env state and the learner replays unrolls from it.",
        choices=("none", "lstm", "gru", "transformer"),
    )
    core_size: int = option(256, "Hidden size of the core (ignored when core = none).", ge=1)
    transformer_window: int = option(
        32,
        "Transformer core: past steps each layer attends to (its memory). Each env's state is "
        "window * (layers * 2 * core_size + 1) floats (65.7 KB at the defaults), sent per unroll.",
        ge=1,
        le=1024,
    )
    transformer_layers: int = option(
        1,
        "Transformer core: gated transformer blocks; the reach is layers * window steps. Each "
        "adds ~0.2 ms per sample to one-thread CPU actor inference at core_size 256 "
        "(NatureCNN alone: ~0.15 ms).",
        ge=1,
    )
    transformer_heads: int = option(
        4, "Transformer core: attention heads (must divide model.core_size).", ge=1
    )
    noisy: bool = option(
        False,
        "NoisyLinear policy and value heads (factorised Gaussian noise, Fortunato et al. 2018), "
        "resampled once per unroll by actors and once per update by the learner.",
    )
    noisy_sigma0: float = option(
        0.5, "NoisyNet sigma_0: initial noise scale, sigma = sigma_0 / sqrt(fan_in).", gt=0
    )
    last_action: bool = option(
        False,
        "Feed a one-hot of the previous action to the core and heads (IMPALA's last-action "
        "input): for actions whose effect depends on what is still held, e.g. Mario's A.",
    )

    def check(self) -> None:
        if self.core == "transformer" and self.core_size % self.transformer_heads:
            raise ConfigError(
                f"model.transformer_heads: {self.transformer_heads} heads do not divide "
                f"model.core_size = {self.core_size}"
            )


@dataclass(frozen=True)
class ActorConfig(Section):
    """Actor processes: env stepping, local CPU inference and unroll streaming."""

    SECTION: ClassVar[str] = "actor"

    num_envs: int = option(8, "Environments stepped by each actor (one inference batch).", ge=1)
    unroll_length: int = option(20, "Agent steps T per unroll sent to the learner.", ge=1)
    learner_timeout_s: float = option(
        300.0,
        "Seconds without any message from the learner before an actor gives up and exits "
        "(until then it says hello again with backoff 1 -> 32 s, so a restarted learner is "
        "rejoined without restarting the actor).",
        gt=0,
    )
    greedy_envs: int = option(
        0,
        "Envs per actor that take the argmax action instead of sampling, so training visits "
        "the states a greedy evaluation reaches (Ape-X's per-actor exploration ladder, Horgan "
        "et al. 2018); V-trace corrects for their point-mass behaviour policy. Their episodes "
        "are counted apart from the reported figures. Must be < actor.num_envs.",
        ge=0,
    )

    def check(self) -> None:
        if self.greedy_envs >= self.num_envs:
            raise ConfigError(
                f"actor.greedy_envs: must be < actor.num_envs = {self.num_envs} (at least one "
                f"env samples), got {self.greedy_envs}"
            )


@dataclass(frozen=True)
class LearnerConfig(Section):
    """The learner: batching, V-trace, optimisation, weight publishing."""

    SECTION: ClassVar[str] = "learner"

    batch_size: int = option(8, "Unrolls B per learner update.", ge=1)
    learning_rate: float = option(4e-4, "AdamW learning rate.", gt=0)
    adam_eps: float = option(1e-8, "AdamW epsilon.", gt=0)
    weight_decay: float = option(0.0, "AdamW decoupled weight decay.", ge=0)
    discount: float = option(0.99, "Discount gamma per agent step.", ge=0, le=1)
    entropy_cost: float = option(0.01, "Weight of the entropy bonus.", ge=0)
    baseline_cost: float = option(0.5, "Weight of the value (baseline) loss.", ge=0)
    max_grad_norm: float = option(40.0, "Global gradient-norm clip.", gt=0)
    clip_rho_threshold: float = option(1.0, "V-trace rho-bar (truncates importance weights).", gt=0)
    clip_pg_rho_threshold: float = option(1.0, "V-trace rho-bar for the policy gradient.", gt=0)
    reward_clip: float = option(0.0, "Clip rewards to [-x, x] in the loss; 0 = no clipping.", ge=0)
    reward_scale: float = option(1.0, "Multiply env rewards by this before the loss.", gt=0)
    max_policy_lag: int = option(
        100, "Drop unrolls whose oldest step is this many policy versions behind.", ge=0
    )
    publish_interval_s: float = option(
        0.1,
        "Broadcast new weights at most this often (seconds); 0 = after every update. Each "
        "broadcast is one message fanned out to all actors; actors load only the newest.",
        ge=0,
    )
    prefetch: bool = option(
        True,
        "Prepare the next update's batch (replay sampling, collation, the copy to the device) "
        "on a worker thread while the current update trains (learner/pipeline.py).",
    )
    credits_per_env: int = option(
        2,
        "Flow control: unrolls each actor env may have in flight (sent, not yet consumed). "
        "Bounds learner memory and policy lag.",
        ge=1,
    )
    device: str = option(
        "auto",
        "Torch device: auto (cuda if present), cpu, cuda, cuda:N.",
    )
    num_threads: int = option(0, "torch intra-op threads on CPU; 0 = torch's default.", ge=0)
    returns: str = option(
        "vtrace",
        "Return estimator: vtrace (off-policy corrected, Espeholt et al. 2018) or gae "
        "(Schulman et al. 2016; ignores the behaviour policy, so only for on-policy runs and "
        "not with replay).",
        choices=("vtrace", "gae"),
    )
    gae_lambda: float = option(0.95, "GAE lambda (learner.returns = gae only).", ge=0, le=1)
    entropy_cost_final: float = option(
        -1.0,
        "Entropy bonus weight at the end of the frame budget, reached linearly from "
        "entropy_cost; negative = same as entropy_cost (constant).",
    )
    lr_schedule: str = option(
        "constant",
        "Learning rate after the warm-up: constant, or cosine decay to learning_rate * "
        "min_lr_ratio at the end of the frame budget (Loshchilov & Hutter 2017).",
        choices=("constant", "cosine"),
    )
    warmup_updates: int = option(
        0, "Linear learning-rate warm-up over this many updates; 0 = none.", ge=0
    )
    min_lr_ratio: float = option(
        0.0, "Cosine schedule: final learning rate as a fraction of learning_rate.", ge=0, le=1
    )
    grad_accumulation: int = option(
        1,
        "Micro-batches per update: the batch is split along B, gradients are accumulated, then "
        "one optimiser step (same update, less activation memory).",
        ge=1,
    )
    amp: str = option(
        "off",
        "Mixed precision of the training forward pass: off (float32), bf16 (bfloat16 autocast; "
        "CUDA, or emulated on CPUs without native bf16) or fp16 (float16 autocast with a "
        "GradScaler).",
        choices=("off", "bf16", "fp16"),
    )
    max_abs_reward: float = option(
        1e6,
        "Reject unrolls with a |reward| (raw env units per agent step) above this: a huge "
        "finite reward overflows the value loss and poisons the weights.",
        gt=0,
    )
    max_abs_logit: float = option(1e4, "Reject unrolls with a |behaviour logit| above this.", gt=0)
    max_abs_core_state: float = option(
        1e4, "Reject unrolls with an |initial core state| value above this.", gt=0
    )
    max_abs_obs: float = option(
        1e6, "Reject unrolls with a float observation of |value| above this.", gt=0
    )
    compile: bool = option(
        False,
        "torch.compile the training model (slow first updates while it compiles; checkpoints "
        "keep plain state-dict keys).",
    )

    def check(self) -> None:
        if self.grad_accumulation > self.batch_size:
            raise ConfigError(
                "learner.grad_accumulation: must be <= learner.batch_size "
                f"({self.grad_accumulation} > {self.batch_size})"
            )

    @property
    def resolved_device(self) -> str:
        """``device`` with ``auto`` resolved to ``cuda`` when torch sees a GPU, else ``cpu``."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ReplayConfig(Section):
    """Prioritized replay of whole unrolls mixed into each learner batch (Schaul et al. 2016).

    Every fresh unroll is stored; each update trains on B_fresh fresh unrolls plus
    B - B_fresh replayed ones, corrected by V-trace (off-policy) and importance-sampling weights.
    """

    SECTION: ClassVar[str] = "replay"

    enabled: bool = option(False, "Mix prioritized replay into the learner's batches.")
    capacity: int = option(
        10_000,
        "Unrolls the replay holds (oldest evicted); a Mario unroll of T = 20 takes ~0.17 MB.",
        ge=1,
    )
    ratio: float = option(
        0.5,
        "Fraction of each learner batch sampled from replay; the other "
        "max(1, round(B * (1 - ratio))) unrolls are fresh.",
        ge=0,
        le=1,
    )
    min_size: int = option(
        100, "Unrolls stored before replayed ones join the batches (until then: fresh only).", ge=0
    )
    alpha: float = option(0.6, "Priority exponent alpha (0 = uniform sampling).", ge=0)
    beta: float = option(
        0.4,
        "Initial importance-sampling exponent beta, annealed to 1 over the frame budget.",
        ge=0,
        le=1,
    )
    eps: float = option(1e-6, "Added to each priority (mean |v_s - V(x_s)|) before alpha.", gt=0)
    save: bool = option(
        False,
        "Also save the replay buffer (RUN_DIR/replay.pt, atomically) with each checkpoint, and "
        "restore it on resume; off by default because a full Mario buffer is gigabytes.",
    )

    def check(self) -> None:
        if self.ratio >= 1.0:
            raise ConfigError(
                f"replay.ratio: must be < 1 (each batch needs a fresh unroll), got {self.ratio}"
            )


@dataclass(frozen=True)
class NetworkConfig(Section):
    """Where the learner listens. Actors connect to the same endpoints."""

    SECTION: ClassVar[str] = "network"

    trajectory_endpoint: str = option(
        "tcp://127.0.0.1:5555", "Learner ROUTER endpoint that receives unrolls and hellos."
    )
    broadcast_endpoint: str = option(
        "tcp://127.0.0.1:5556", "Learner PUB endpoint for weights and status."
    )

    def check(self) -> None:
        for name in ("trajectory_endpoint", "broadcast_endpoint"):
            check_endpoint(f"network.{name}", getattr(self, name))
        if self.trajectory_endpoint == self.broadcast_endpoint:
            raise ConfigError(
                "network.broadcast_endpoint: must differ from network.trajectory_endpoint "
                f"(both {self.trajectory_endpoint}): the learner binds a socket on each"
            )


ENDPOINT_SCHEMES = ("tcp", "ipc", "inproc")
"""ZeroMQ transports an endpoint may name (zmq_tcp(7), zmq_ipc(7), zmq_inproc(7))."""


def check_endpoint(path: str, endpoint: str) -> None:
    """Check that ``endpoint`` is a ZeroMQ endpoint the learner can bind and actors connect to:
    ``tcp://HOST:PORT`` (PORT in 1-65535; HOST an address, a name or ``*``),
    ``ipc://PATH`` or ``inproc://NAME``.

    Raises:
        ConfigError: naming ``path`` and what is wrong, before any process starts (a bad
            endpoint otherwise fails inside the learner, which was restarted as if it were
            a transient failure).
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ENDPOINT_SCHEMES:
        raise ConfigError(
            f"{path}: {endpoint!r} is not a ZeroMQ endpoint; expected "
            "tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        )
    if not rest:
        raise ConfigError(f"{path}: {endpoint!r} names no address after {scheme}://")
    if scheme != "tcp":
        return
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdecimal() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{path}: {endpoint!r} needs tcp://HOST:PORT with a port in 1-65535")


@dataclass(frozen=True)
class EvalConfig(Section):
    """Periodic evaluation during training by an eval actor (``python -m evaluation.actor``).

    It plays the latest published weights on fixed stages, sends no unrolls (nothing it plays
    is trained on) and logs to TensorBoard under ``RUN_DIR/eval/``.
    """

    SECTION: ClassVar[str] = "eval"

    interval_updates: int = option(
        0, "Evaluate the latest weights every this many learner updates; 0 = no eval actor.", ge=0
    )
    stages: tuple[str, ...] = option(
        (),
        "Stages to evaluate (same syntax as env.stages); empty = env.stages, else env.id's stage.",
    )
    episodes: int = option(2, "Episodes per stage and evaluation.", ge=1)
    policy: str = option(
        "sample",
        "sample (draw from the policy, as the actors do) or greedy (argmax of the logits).",
        choices=("sample", "greedy"),
    )
    video: bool = option(True, "Log the first episode of each stage as a TensorBoard video.")
    max_episode_steps: int = option(
        0, "Truncate eval episodes after this many agent steps; 0 = env.max_episode_steps.", ge=0
    )

    def check(self) -> None:
        if not self.stages:
            return

        try:
            parse_stages(self.stages, "eval.stages")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


@dataclass(frozen=True)
class SecurityConfig(Section):
    """ZeroMQ CURVE encryption and authentication (keys made by ``launcher.py keys``)."""

    SECTION: ClassVar[str] = "security"

    curve: bool = option(
        False, "Encrypt every socket and accept only actors whose key is allow-listed."
    )
    keys_dir: str = option("keys", "Directory of the CURVE certificates (launcher.py keys).")
    client_name: str = option(
        "local", "Client certificate the launcher gives the processes it starts."
    )


@dataclass(frozen=True)
class TelemetryConfig(Section):
    """Heartbeats, liveness and stall diagnostics (the ZeroMQ guide's Paranoid Pirate timing)."""

    SECTION: ClassVar[str] = "telemetry"

    heartbeat_interval_s: float = option(
        1.0, "Seconds between heartbeats from every process.", gt=0
    )
    stale_after_s: float = option(
        5.0, "A peer silent this long is marked stale in the fleet view.", gt=0
    )
    dead_after_s: float = option(
        15.0, "A peer silent this long is marked dead and its credits are released.", gt=0
    )
    stall_after_s: float = option(
        60.0, "A main loop without progress this long writes its thread stacks to stalls/.", gt=0
    )

    def check(self) -> None:
        if self.dead_after_s <= self.stale_after_s:
            raise ConfigError(
                "telemetry.dead_after_s: must be greater than telemetry.stale_after_s "
                f"({self.dead_after_s} <= {self.stale_after_s})"
            )


@dataclass(frozen=True)
class Config:
    """A whole run: one learner and its actors."""

    run: RunConfig = RunConfig()
    env: EnvConfig = EnvConfig()
    model: ModelConfig = ModelConfig()
    actor: ActorConfig = ActorConfig()
    learner: LearnerConfig = LearnerConfig()
    network: NetworkConfig = NetworkConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    security: SecurityConfig = SecurityConfig()
    eval: EvalConfig = EvalConfig()
    replay: ReplayConfig = ReplayConfig()

    def __post_init__(self) -> None:
        # Each section checked its own fields when it was built (Section); the rules across
        # sections run here, at load time, so the launcher refuses before it starts anything.
        if self.replay.enabled and self.learner.returns == "gae":
            raise ConfigError(
                "learner.returns: gae assumes on-policy data but replayed unrolls are "
                "off-policy; use learner.returns = vtrace with replay.enabled"
            )

    @property
    def env_frames_per_update(self) -> int:
        """Env frames consumed by one learner update: B * T * frames per agent step."""
        return self.learner.batch_size * self.actor.unroll_length * self.env.frames_per_step


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def iter_fields() -> typing.Iterator[tuple[str, dataclasses.Field[Any], type]]:
    """Yield ``("section.name", field, python_type)`` for every leaf field of :class:`Config`."""
    for section, cls in _section_types().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield f"{section}.{f.name}", f, hints[f.name]


def from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested dicts (e.g. parsed TOML).

    Missing fields take their defaults. (Building a section in any way checks its fields'
    types and bounds, and building a :class:`Config` the cross-section rules; this adds unknown
    sections and keys.)

    Raises:
        ConfigError: for an unknown section or key, a wrong type, or an out-of-range value;
            the message starts with the dotted field name.
    """
    sections = _section_types()
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(
            f"{sorted(unknown)[0]}: unknown config section (known: {', '.join(sections)})"
        )
    built: dict[str, Any] = {}
    for section, cls in sections.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{section}: expected a table, got {raw!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key not in names:
                raise ConfigError(
                    f"{section}.{key}: unknown config key (known: {', '.join(names)})"
                )
        built[section] = cls(**raw)  # the section checks and normalises its fields
    return Config(**built)


def to_dict(config: Config) -> dict[str, Any]:
    """The config as nested plain dicts (tuples become lists), ready for TOML or JSON."""
    out = dataclasses.asdict(config)
    for section in out.values():
        for key, val in section.items():
            if isinstance(val, tuple):
                section[key] = list(val)
    return out


def parse_override(path: str, text: str) -> Any:
    """Parse a CLI string for the dotted field ``path`` using TOML value syntax.

    Bare words that are not valid TOML (``--env.id CartPole-v1``) are taken as strings.

    Raises:
        ConfigError: if ``path`` names no field.
    """
    known = {name for name, _, _ in iter_fields()}
    if path not in known:
        raise ConfigError(f"{path}: unknown config key")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load(path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a TOML config file (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: TOML file path, or None for the schema defaults.
        overrides: ``{"section.key": value}`` applied on top of the file.

    Raises:
        ConfigError: if the file is missing or malformed, or a value is invalid (names the field).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"{section}: expected a table")
        data[section][key] = value
    return from_dict(data)


def save(config: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as TOML (readable back with :func:`load`)."""
    Path(path).write_text(tomli_w.dumps(to_dict(config)))
