"""The learner process host: sockets, batching, weight publishing, metrics and checkpoints.

Run by: ``python -m learner`` (started by the launcher, or by hand on the GPU machine).
Owns: the ROUTER socket that receives hellos and unrolls, the PUB socket that broadcasts weights
and status, the bounded queue of accepted unrolls, the accounting of every unroll received
(accepted, rejected by reason, dropped stale, duplicate), TensorBoard scalars, periodic and
final checkpoints, and the frame budget. The algorithm itself is :class:`learner.learner.Learner`.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch
import zmq
from torch.utils.tensorboard import SummaryWriter

from actor.env import num_actions, observation_spec
from configs import schema
from learner.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from learner.learner import Learner, collate
from models.weights import flatten_state
from protocol import transport
from protocol.codec import decode
from protocol.messages import (
    Credit,
    EpisodeStats,
    Hello,
    LearnerStatus,
    ProtocolError,
    Trajectory,
    TrajectorySpec,
    Weights,
    Welcome,
)

log = logging.getLogger("learner")

STATUS_INTERVAL_S = 1.0
EPISODE_WINDOW = 100
EPISODE_LOG = "episodes.jsonl"
"""One JSON object per finished episode: env_frames, actor, return, length, x_pos, flag, stage."""


@dataclass
class Accounting:
    """What became of every unroll received; exported to status, TensorBoard and checkpoints.

    Every trajectory message lands in exactly one bucket, so
    ``received == accepted + sum(rejected.values()) + dropped_stale + duplicates``.
    """

    accepted: int = 0
    accepted_by_actor: Counter[int] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    dropped_stale: int = 0
    duplicates: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


@dataclass
class Peer:
    """An actor connection known from its hello: who it is and its unrolls in flight."""

    actor_id: int
    run_id: str
    credits: int  # unrolls it may still send before it must wait for a Credit


@dataclass
class EpisodeWindow:
    """Finished-episode statistics: totals since the run began, means over the last 100."""

    recent: deque[EpisodeStats] = field(default_factory=lambda: deque(maxlen=EPISODE_WINDOW))
    episodes: int = 0
    flags: int = 0
    max_x_pos: int = 0

    def add(self, stats: EpisodeStats) -> None:
        self.recent.append(stats)
        self.episodes += 1
        self.flags += int(stats.flag_get)
        self.max_x_pos = max(self.max_x_pos, stats.max_x_pos)

    def mean(self, attr: str) -> float:
        if not self.recent:
            return 0.0
        return float(np.mean([getattr(s, attr) for s in self.recent]))


class LearnerServer:
    """Hosts a :class:`Learner` behind ZeroMQ until the frame budget is spent or it is stopped.

    Args:
        config: the resolved run config.
        run_dir: where TensorBoard events and checkpoints go.
        resume: a checkpoint to continue from (counters, model, optimiser), or None.
    """

    def __init__(self, config: schema.Config, run_dir: Path, resume: Path | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.run_id = uuid.uuid4().hex[:12]
        device = config.learner.resolved_device
        if device == "cpu":
            log.warning("no CUDA device in use: the learner trains on the CPU (slower)")
            if config.learner.num_threads:
                torch.set_num_threads(config.learner.num_threads)
        obs_shape, obs_dtype = observation_spec(config.env)
        self.spec = TrajectorySpec(
            config.actor.unroll_length, obs_shape, np.dtype(obs_dtype), num_actions(config.env)
        )
        self.learner = Learner(config, obs_shape, self.spec.num_actions, device)
        self.accounting = Accounting()
        self.episodes = EpisodeWindow()
        self.env_frames = 0
        if resume is not None:
            self._restore(resume)
        self.frames_per_unroll = config.actor.unroll_length * config.env.frames_per_step
        self.pending: deque[tuple[bytes, Trajectory]] = deque()
        self.peers: dict[bytes, Peer] = {}
        self._grants: Counter[bytes] = Counter()
        self.last_seq: dict[tuple[int, str], int] = {}
        self.stopping = False
        self.ctx = zmq.Context.instance()
        self.router = transport.bind_router(self.ctx, config.network.trajectory_endpoint)
        self.pub = transport.bind_pub(self.ctx, config.network.broadcast_endpoint)
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.episode_log = open(run_dir / EPISODE_LOG, "a", buffering=1)  # noqa: SIM115
        self.config_toml = tomli_w.dumps(schema.to_dict(config))
        self._weights: Weights | None = None
        self._metric_sums: Counter[str] = Counter()
        self._metric_count = 0
        self._lags: list[tuple[float, float]] = []  # (mean, max) policy lag per batch
        self._rate: deque[tuple[float, int, int]] = deque(maxlen=30)
        log.info(
            "learner %s on %s: unrolls at %s, broadcasts at %s",
            self.run_id,
            device,
            config.network.trajectory_endpoint,
            config.network.broadcast_endpoint,
        )

    # -- checkpoints ---------------------------------------------------------------------
    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, required=("learner", "counters"))
        self.learner.load_state_dict(state["learner"])
        counters = state["counters"]
        self.env_frames = int(counters["env_frames"])
        self.episodes.episodes = int(counters.get("episodes", 0))
        self.episodes.flags = int(counters.get("flags", 0))
        self.episodes.max_x_pos = int(counters.get("max_x_pos", 0))
        log.info(
            "resumed from %s at update %d, %d env frames",
            path,
            self.learner.updates,
            self.env_frames,
        )

    def save(self) -> Path:
        """Write a checkpoint for the current update; returns its path."""
        path = checkpoint_path(self.run_dir, self.learner.updates)
        state = {
            "learner": self.learner.state_dict(),
            "model": self.learner.model.state_dict(),
            "counters": {
                "env_frames": self.env_frames,
                "updates": self.learner.updates,
                "episodes": self.episodes.episodes,
                "flags": self.episodes.flags,
                "max_x_pos": self.episodes.max_x_pos,
            },
            "config": schema.to_dict(self.config),
        }
        save_checkpoint(state, path, keep=self.config.run.keep_checkpoints)
        log.info("checkpoint %s", path)
        return path

    # -- messages ------------------------------------------------------------------------
    def _current_weights(self) -> Weights:
        if self._weights is None or self._weights.policy_version != self.learner.policy_version:
            layout, flat = flatten_state(self.learner.model)
            self._weights = Weights(
                policy_version=self.learner.policy_version,
                learner_run_id=self.run_id,
                layout=layout,
                flat=flat,
            )
        return self._weights

    def publish_weights(self) -> None:
        transport.send(self.pub, self._current_weights(), prefix=[transport.TOPIC_WEIGHTS])

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        peer = self.peers.get(identity)
        try:
            msg = decode(frames)
            if isinstance(msg, Trajectory):
                if peer is None or peer.credits <= 0:
                    raise ProtocolError("credits", "no_credit", "unroll sent without a credit")
                peer.credits -= 1
                self._grants[identity] += 1  # returned now unless it is accepted below
                self.spec.validate(msg)
        except ProtocolError as exc:
            self.accounting.rejected[f"{exc.field}:{exc.reason}"] += 1
            log.warning("rejected a message from actor %s: %s", peer.actor_id if peer else "?", exc)
            return
        if isinstance(msg, Hello):
            self._welcome(identity, msg)
        elif isinstance(msg, Trajectory):
            if self._accept(msg):
                self._grants[identity] -= 1  # returned when the unroll is trained on
                self.pending.append((identity, msg))
        else:
            self.accounting.rejected[f"type:unexpected_{msg.TYPE}"] += 1

    def _welcome(self, identity: bytes, hello: Hello) -> None:
        credits = self.config.learner.credits_per_env * (
            hello.num_envs or self.config.actor.num_envs
        )
        self.peers[identity] = Peer(hello.actor_id, hello.run_id, credits)
        log.info(
            "actor %d (%s pid %d) joined with %d credits",
            hello.actor_id,
            hello.host,
            hello.pid,
            credits,
        )
        welcome = Welcome(
            learner_run_id=self.run_id,
            config_toml=self.config_toml,
            broadcast_endpoint=self.config.network.broadcast_endpoint,
            policy_version=self.learner.policy_version,
            credits=credits,
        )
        transport.send(self.router, welcome, prefix=[identity])
        transport.send(self.router, self._current_weights(), prefix=[identity])

    def _accept(self, traj: Trajectory) -> bool:
        """Sort a valid unroll into accepted, duplicate or stale; True if accepted."""
        key = (traj.actor_id, traj.run_id)
        if traj.seq <= self.last_seq.get(key, -1):
            self.accounting.duplicates += 1
            return False
        self.last_seq[key] = traj.seq
        lag = self.learner.policy_version - int(traj.policy_version.min())
        if lag > self.config.learner.max_policy_lag:
            self.accounting.dropped_stale += 1
            return False
        self.accounting.accepted += 1
        self.accounting.accepted_by_actor[traj.actor_id] += 1
        for stats in traj.episodes:
            self.episodes.add(stats)
            record = {
                "env_frames": self.env_frames,
                "actor_id": traj.actor_id,
                "return": stats.episode_return,
                "length": stats.length,
                "max_x_pos": stats.max_x_pos,
                "flag_get": stats.flag_get,
                "stage": stats.stage,
            }
            self.episode_log.write(json.dumps(record) + "\n")
        return True

    def _send_credits(self) -> None:
        for identity, n in self._grants.items():
            peer = self.peers.get(identity)
            if n > 0 and peer is not None:
                peer.credits += n
                transport.send(self.router, Credit(unrolls=n), prefix=[identity])
        self._grants.clear()

    def _receive(self, timeout_ms: int) -> None:
        """Read every waiting message (after up to ``timeout_ms``), then return credits.

        The queue needs no cap of its own: credits bound it to the sum of the actors' grants.
        """
        if not self.router.poll(timeout_ms):
            return
        while True:
            try:
                frames = self.router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._handle(bytes(frames[0].buffer), frames[1:])
        self._send_credits()

    # -- training ------------------------------------------------------------------------
    def _train(self) -> None:
        b = self.config.learner.batch_size
        taken = [self.pending.popleft() for _ in range(b)]
        batch = collate([traj for _, traj in taken], self.learner.device)
        version = self.learner.policy_version
        lag = (version - batch.policy_version).float()
        self._lags.append((float(lag.mean()), float(lag.max())))
        metrics = self.learner.train_step(batch)
        self.env_frames += b * self.frames_per_unroll
        self._metric_sums.update(metrics)
        self._metric_count += 1
        self.publish_weights()
        for identity, _ in taken:
            self._grants[identity] += 1
        self._send_credits()

    def status(self, done: bool = False) -> LearnerStatus:
        """The figures broadcast to the launcher and actors about once a second."""
        now = time.monotonic()
        self._rate.append((now, self.env_frames, self.learner.updates))
        t0, f0, _ = self._rate[0]
        fps = (self.env_frames - f0) / (now - t0) if now > t0 else 0.0
        acc = self.accounting
        return LearnerStatus(
            learner_run_id=self.run_id,
            policy_version=self.learner.policy_version,
            updates=self.learner.updates,
            env_frames=self.env_frames,
            total_env_frames=self.config.run.total_env_frames,
            env_fps=fps,
            episodes=self.episodes.episodes,
            mean_return=self.episodes.mean("episode_return"),
            mean_x_pos=self.episodes.mean("max_x_pos"),
            max_x_pos=self.episodes.max_x_pos,
            flags=self.episodes.flags,
            accepted=acc.accepted,
            rejected=acc.rejected_total,
            dropped_stale=acc.dropped_stale,
            duplicates=acc.duplicates,
            done=done,
        )

    def _log_scalars(self, status: LearnerStatus) -> None:
        step = self.env_frames
        w = self.writer
        if self._metric_count:
            for key, total in self._metric_sums.items():
                w.add_scalar(key, total / self._metric_count, step)
        if self.episodes.recent:
            recent = self.episodes.recent
            w.add_scalar("episode/return", status.mean_return, step)
            w.add_scalar("episode/length", self.episodes.mean("length"), step)
            w.add_scalar("episode/x_pos", status.mean_x_pos, step)
            w.add_scalar("episode/x_pos_max", max(s.max_x_pos for s in recent), step)
            w.add_scalar("episode/flag_rate", self.episodes.mean("flag_get"), step)
        if self._lags:
            w.add_scalar("policy_lag/mean", float(np.mean([m for m, _ in self._lags])), step)
            w.add_scalar("policy_lag/max", max(m for _, m in self._lags), step)
        w.add_scalar("throughput/env_fps", status.env_fps, step)
        w.add_scalar("throughput/updates", self.learner.updates, step)
        acc = self.accounting
        w.add_scalar("unrolls/accepted", acc.accepted, step)
        w.add_scalar("unrolls/rejected", acc.rejected_total, step)
        w.add_scalar("unrolls/dropped_stale", acc.dropped_stale, step)
        w.add_scalar("unrolls/duplicates", acc.duplicates, step)
        w.flush()
        self._metric_sums.clear()
        self._metric_count = 0
        self._lags.clear()

    def run(self) -> None:
        """Serve until the budget is reached or :attr:`stopping` is set; then checkpoint."""
        rc = self.config.run
        self.publish_weights()
        last_status = last_log = last_ckpt = time.monotonic()
        while not self.stopping and self.env_frames < rc.total_env_frames:
            self._receive(timeout_ms=50)
            if len(self.pending) >= self.config.learner.batch_size:
                self._train()
            now = time.monotonic()
            if now - last_status >= STATUS_INTERVAL_S:
                last_status = now
                transport.send(self.pub, self.status(), prefix=[transport.TOPIC_STATUS])
            if now - last_log >= rc.log_interval_s:
                last_log = now
                self._log_scalars(self.status())
            if now - last_ckpt >= rc.checkpoint_interval_s:
                last_ckpt = now
                self.save()
        self._finish()

    def _finish(self) -> None:
        final = self.status(done=not self.stopping)
        self._log_scalars(final)
        self.save()
        transport.send(self.pub, final, prefix=[transport.TOPIC_STATUS])
        acc = self.accounting
        log.info(
            "learner stopped: %d updates, %d env frames; unrolls accepted %d, rejected %d %s, "
            "dropped stale %d, duplicates %d; accepted by actor %s",
            self.learner.updates,
            self.env_frames,
            acc.accepted,
            acc.rejected_total,
            dict(acc.rejected),
            acc.dropped_stale,
            acc.duplicates,
            dict(sorted(acc.accepted_by_actor.items())),
        )

    def close(self) -> None:
        self.writer.close()
        self.episode_log.close()
        self.router.close(0)
        self.pub.close(linger=500)


def serve(config: schema.Config, run_dir: Path, resume: Path | None) -> int:
    """Run a learner until done or SIGTERM/SIGINT (which still writes a final checkpoint)."""
    server = LearnerServer(config, run_dir, resume)

    def _stop(signum: int, _frame: Any) -> None:
        server.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run()
    finally:
        server.close()
    return 0
