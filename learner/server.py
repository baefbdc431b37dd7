"""The learner process host: sockets, batching, weight publishing, fleet view, checkpoints.

Run by: ``python -m learner`` (started by the launcher, or by hand on the GPU machine).
Owns: the ROUTER socket that receives hellos, unrolls and heartbeats; the PUB socket that
broadcasts weights, status and the heartbeat stream; the queue of accepted unrolls (bounded by
credits); the fleet view; periodic and final checkpoints; and the frame budget. The algorithm
is :class:`learner.learner.Learner`; counting is :mod:`learner.accounting`; flow control is
:mod:`learner.credits`; what gets written out is :mod:`learner.reporting`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import tomli_w
import torch
import zmq

from configs import schema
from envs.spec import num_actions, observation_spec
from learner.accounting import EPISODE_LOG, Accounting, EpisodeWindow
from learner.checkpoint import (
    CheckpointError,
    atomic_save,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    remove_partial_writes,
    save_checkpoint,
)
from learner.credits import CreditLedger
from learner.fleet import DEAD, FleetView
from learner.hints import HintInputs, Hints
from learner.learner import Learner, PreparedBatch
from learner.pipeline import BatchPrefetcher, TimeSplit
from learner.reporting import Reporter
from learner.wandb_mirror import WandbMirror
from models.weights import flatten_state
from protocol import transport
from protocol.codec import decode
from protocol.exit_status import NO_SPACE_ERRNOS, ExitStatus, PermanentFailure
from protocol.messages import (
    Credit,
    Heartbeat,
    Hello,
    LearnerStatus,
    Message,
    ProtocolError,
    Rejoin,
    Trajectory,
    Weights,
    Welcome,
    in_run,
    tagged_run_id,
)
from protocol.security import server_keys, start_authenticator
from telemetry.heartbeat import HeartbeatBuilder
from telemetry.stall import StallWatchdog

log = logging.getLogger("learner")

REPLAY_FILE = "replay.pt"
"""The replay buffer, saved beside the checkpoints when ``replay.save`` is on."""
VERSION_FILE = "policy_version"
"""The highest policy version announced in this run directory (see ``_raise_version``)."""
MAX_ENVS_PER_ACTOR = 4096
"""A hello claiming more envs (and so more credits) than this is rejected."""


class LearnerServer:
    """Hosts a :class:`Learner` behind ZeroMQ until the frame budget is spent or it is stopped.

    Args:
        config: the resolved run config.
        run_dir: where TensorBoard events, logs, stall dumps and checkpoints go.
        resume: a checkpoint to continue from (counters, model, optimiser), or None.
        run_token: the launcher's run token (:func:`protocol.messages.tagged_run_id`), so
            only this run's actors take this learner's messages as their learner's.
    """

    def __init__(
        self,
        config: schema.Config,
        run_dir: Path,
        resume: Path | None = None,
        run_token: str = "",
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.run_token = run_token
        self.run_id = tagged_run_id(run_token, uuid.uuid4().hex[:12])
        device = config.learner.resolved_device
        self._device_auto_cpu = config.learner.device == "auto" and device == "cpu"
        self.hints = Hints()
        self._hints: dict[str, str] = {}
        self._skipped_since_beat = 0
        if device == "cpu":
            log.warning("no CUDA device in use: the learner trains on the CPU (slower)")
            if config.learner.num_threads:
                torch.set_num_threads(config.learner.num_threads)
        obs_shape, obs_dtype = observation_spec(config.env)
        actions = num_actions(config.env)
        self.learner = Learner(config, obs_shape, actions, device, obs_dtype)
        self.spec = self.learner.spec
        self._prefetch = BatchPrefetcher(self.learner) if config.learner.prefetch else None
        self._inflight: tuple[list[tuple[bytes, Trajectory]], Any] | None = None
        self.timing = TimeSplit()
        self._started = time.monotonic()
        self.accounting = Accounting()
        self.episodes = EpisodeWindow(run_dir / EPISODE_LOG)
        self.env_frames = 0
        for leftover in remove_partial_writes(run_dir):
            log.warning("removed %s, a checkpoint write that was cut short", leftover.name)
        # published versions = updates + offset; the offset only grows, so versions never go
        # backwards across restarts (see _raise_version)
        self.version_offset = 0
        if resume is not None:
            self._restore(resume)
        self._version_file = run_dir / VERSION_FILE
        self._persisted_version: int | None = None
        self._published_version: int | None = None
        self._last_publish = 0.0
        self._credit_short = False
        if self._version_file.is_file():
            text = self._version_file.read_text().strip() or "0"
            if not text.isdecimal() or len(text) > 18:  # an int64 version, as published
                raise PermanentFailure(
                    ExitStatus.CORRUPT_RUN_DIR,
                    f"{self._version_file}: {text[:40]!r} is not a policy version; restore it "
                    "or delete it (the checkpoints' versions are then the floor)",
                )
            self._raise_version(int(text), "run directory")
        self.frames_per_unroll = config.actor.unroll_length * config.env.frames_per_step
        self.pending: deque[tuple[bytes, Trajectory]] = deque()
        self.credits = CreditLedger()
        tc = config.telemetry
        self.fleet = FleetView(tc.stale_after_s, tc.dead_after_s)
        self.heartbeats = HeartbeatBuilder("learner", "0", self.run_id)
        self.watchdog = StallWatchdog(run_dir / "stalls", "learner-0", tc.stall_after_s)
        self.stopping = False
        self.ctx = zmq.Context.instance()
        self.auth = None
        curve = None
        if config.security.curve:
            curve = server_keys(Path(config.security.keys_dir))
            self.auth = start_authenticator(self.ctx, curve)
        else:
            for endpoint in (config.network.trajectory_endpoint,
                             config.network.broadcast_endpoint):  # fmt: skip
                if not is_loopback(endpoint):
                    log.warning(
                        "binding %s without CURVE: anyone who reaches it can send unrolls and "
                        "read weights; set security.curve = true (keys: launcher.py keys)",
                        endpoint,
                    )
        nw = config.network
        router = None
        try:
            router = _bind(transport.bind_router, self.ctx, nw.trajectory_endpoint, curve)
            self.pub = _bind(transport.bind_pub, self.ctx, nw.broadcast_endpoint, curve)
        except PermanentFailure:
            if router is not None:
                router.close(0)
            if self.auth is not None:
                self.auth.stop()  # its thread would keep the process alive
            raise
        self.router = router
        mirror = WandbMirror(config, run_dir) if config.run.wandb_project else None
        self.reporter = Reporter(run_dir, config.env.frames_per_step, mirror)
        self.config_toml = tomli_w.dumps(schema.to_dict(config))
        self._weights: Weights | None = None
        self.env_fps = self.updates_per_s = 0.0
        log.info(
            "learner %s on %s: unrolls at %s, broadcasts at %s",
            self.run_id, device, config.network.trajectory_endpoint,
            config.network.broadcast_endpoint,
        )  # fmt: skip

    # -- checkpoints ---------------------------------------------------------------------
    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, required=("learner", "model", "counters"))
        try:
            # the model is stored once, at the top level (checkpoints before 2026-12 also kept a
            # copy in state["learner"]; the top-level one is the same weights)
            self.learner.load_state_dict({**state["learner"], "model": state["model"]})
        except (RuntimeError, KeyError, ValueError) as exc:  # torch's size-mismatch report
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path} does not fit this config's model: {first}") from exc
        counters = state["counters"]
        self.env_frames = int(counters["env_frames"])
        saved_version = int(counters.get("policy_version", self.learner.updates))
        self.version_offset = saved_version - self.learner.updates
        self.episodes.episodes = int(counters.get("episodes", 0))
        self.episodes.flags = int(counters.get("flags", 0))
        self.episodes.max_x_pos = int(counters.get("max_x_pos", 0))
        self.episodes.restored = int(counters.get("restored_episodes", 0))
        replay_file = path.parent.parent / REPLAY_FILE
        if self.config.replay.save and replay_file.is_file():
            self.learner.load_replay_state_dict(
                torch.load(replay_file, map_location="cpu", weights_only=True)
            )
            log.info("restored the replay buffer from %s", replay_file)
        log.info("resumed from %s at update %d, %d env frames",
                 path, self.learner.updates, self.env_frames)  # fmt: skip

    def save(self) -> Path:
        """Write a checkpoint for the current update; returns its path."""
        self._settle_prefetch()  # the replay's arrays are saved as they are: no sample meanwhile
        path = checkpoint_path(self.run_dir, self.learner.updates)
        learner_state = self.learner.state_dict()
        state = {
            # the model once, at the top level, where eval and other readers find it
            "model": learner_state.pop("model"),
            "learner": learner_state,
            "counters": {
                "env_frames": self.env_frames,
                "updates": self.learner.updates,
                "policy_version": self.policy_version,
                "episodes": self.episodes.episodes,
                "flags": self.episodes.flags,
                "max_x_pos": self.episodes.max_x_pos,
                "restored_episodes": self.episodes.restored,
            },
            "config": schema.to_dict(self.config),
        }
        save_checkpoint(state, path, keep=self.config.run.keep_checkpoints)
        replay = self.learner.replay_state_dict() if self.config.replay.save else None
        if replay is not None:
            atomic_save(replay, self.run_dir / REPLAY_FILE)
        log.info("checkpoint %s%s", path, " (and the replay buffer)" if replay else "")
        return path

    @property
    def policy_version(self) -> int:
        """Version of the current weights as published: updates plus the restart offset."""
        return self.learner.policy_version + self.version_offset

    def _raise_version(self, floor: int, why: str) -> bool:
        """Number the current weights above ``floor`` (a version published or held before);
        True if the version changed."""
        if floor < self.policy_version:
            return False
        log.info("policy version %d -> %d, above %d from the %s",
                 self.policy_version, floor + 1, floor, why)  # fmt: skip
        self.version_offset += floor + 1 - self.policy_version
        return True

    # -- broadcasts ----------------------------------------------------------------------
    def _current_weights(self) -> Weights:
        if self._weights is None or self._weights.policy_version != self.policy_version:
            layout, flat = flatten_state(self.learner.model)
            self._weights = Weights(
                policy_version=self.policy_version,
                learner_run_id=self.run_id,
                layout=layout,
                flat=flat,
            )
        return self._weights

    def publish_weights(self) -> None:
        """Broadcast the current weights to every actor now (one message on the PUB socket,
        which ZeroMQ fans out)."""
        start = time.perf_counter()
        self._persist_version()
        weights = self._current_weights()
        transport.send(self.pub, weights, prefix=[transport.TOPIC_WEIGHTS])
        self.timing.publish_s += time.perf_counter() - start
        self.timing.weights_published += 1
        self.timing.weight_bytes += weights.flat.nbytes
        self._published_version = self.policy_version
        self._last_publish = time.monotonic()

    def _publish_if_due(self) -> None:
        """Broadcast newer weights, at most once per ``learner.publish_interval_s``.

        Why: the Nature CNN's weights are ~3.6 MB, and a GPU learner doing ~100 updates/s
        would push ~5 GB/s through the PUB socket if it sent every version. Actors load only
        the newest weights they have queued, and policy lag stays measured per step (and
        bounded by ``learner.max_policy_lag``), so skipped versions cost only a little lag.
        """
        if self.policy_version == self._published_version:
            return
        if time.monotonic() - self._last_publish < self.config.learner.publish_interval_s:
            return
        self.publish_weights()

    def _update_hints(self) -> None:
        """Evaluate the training hints (:mod:`learner.hints`) on this heartbeat's figures."""
        replay = self.learner.replay
        self._hints = self.hints.update(
            HintInputs(
                env_frames=self.env_frames,
                total_env_frames=self.config.run.total_env_frames,
                env_fps=self.env_fps,
                device_auto_cpu=self._device_auto_cpu,
                mario=self.config.env.is_mario,
                episodes=self.episodes.episodes,
                mean_x_pos=self.episodes.mean("max_x_pos"),
                replay_size=None if replay is None else len(replay),
                replay_min_size=None if replay is None else self.config.replay.min_size,
                gpu_utilization=self.fleet.totals().gpu_utilization,
                skipped_updates=self._skipped_since_beat,
            )
        )
        self._skipped_since_beat = 0

    def _credit_cap_check(self) -> dict[str, float]:
        """Warn (once per episode of it) when the connected fleet may hold fewer unrolls in
        flight than one update consumes: the learner would then wait forever for a batch
        (e.g. one 1-env actor with batch 16). Returns the heartbeat counters
        ``credit_cap`` (sum of the connections' caps) and ``credits_per_update``."""
        cap, need = self.credits.total_cap, self.learner.fresh_per_step
        short = 0 < cap < need
        if short and not self._credit_short:
            log.warning(
                "the connected actors may hold %d unrolls in flight but one update needs %d "
                "fresh ones: training waits until more actors join; raise "
                "learner.credits_per_env or actor.num_envs, or lower learner.batch_size",
                cap, need,
            )  # fmt: skip
        self._credit_short = short
        return {"credit_cap": cap, "credits_per_update": need}

    def _persist_version(self) -> None:
        """Write the current version to ``RUN_DIR/policy_version`` before anything announces
        it, so the file always holds the highest version this run directory has published: a
        restarted learner numbers its weights above it, and no honest hello or unroll can
        carry a version above the learner's own (one that does is rejected as ``ahead``)."""
        if self._persisted_version == self.policy_version:
            return
        tmp = self._version_file.with_suffix(".tmp")
        try:
            tmp.write_text(str(self.policy_version))
            os.replace(tmp, self._version_file)
        except OSError:
            tmp.unlink(missing_ok=True)  # no partial file left behind (a full disk)
            raise
        self._persisted_version = self.policy_version

    def _publish_stream(self, message: Message, topic: bytes) -> None:
        """Heartbeat stream: broadcast and append to ``heartbeats.jsonl``."""
        transport.send(self.pub, message, prefix=[topic])
        self.reporter.stream(message)

    def _publish_heartbeat(self, heartbeat: Heartbeat) -> None:
        self._publish_stream(heartbeat, transport.TOPIC_HEARTBEAT)
        if heartbeat.state == DEAD and heartbeat.role == "actor" and heartbeat.id.isdecimal():
            # its credits are void: should it come back, it must say hello again (an id that
            # is not a number is no actor id a hello can have registered)
            self.credits.forget_actor(int(heartbeat.id))
            log.warning("actor %s on %s declared dead after %.0f s of silence",
                        heartbeat.id, heartbeat.host, self.fleet.dead_after_s)  # fmt: skip

    # -- messages ------------------------------------------------------------------------
    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        now = time.monotonic()
        numbered = False  # an unroll whose seq is recorded: its rejection is a rejected unroll
        try:
            try:
                msg = decode(frames)
            except ProtocolError as exc:
                if exc.message_type == Trajectory.TYPE:
                    self.credits.settle_unread(identity)  # its sender spent a credit on it
                raise
            if isinstance(msg, Trajectory):
                try:
                    self.credits.check_sender(identity, msg.actor_id, msg.run_id, msg.env_index)
                except ProtocolError as exc:
                    if exc.reason != "unknown_peer":
                        self.credits.settle_unread(identity)  # ids not its hello's: not counted
                        raise
                    # an unknown peer's unroll (the learner restarted under it) is counted like
                    # any other, so sent = accepted + rejected_unrolls + dropped_stale + lost
                    # holds; spend() below rejects it as unknown_peer
                self._touch(f"actor:{msg.actor_id}", now)
                if not self.accounting.record_seq(msg.actor_id, msg.run_id, msg.seq):
                    self.accounting.duplicates += 1
                    self.credits.settle_unread(identity)
                    return
                numbered = True
                self.credits.spend(identity)
                try:
                    self.spec.validate(msg)
                    if msg.policy_version.size and msg.policy_version.max() > self.policy_version:
                        raise ProtocolError(
                            "policy_version", "ahead",
                            f"above the learner's version {self.policy_version}",
                        )  # fmt: skip
                except ProtocolError:
                    self.credits.give_back(identity)  # a rejected unroll is consumed too
                    raise
        except ProtocolError as exc:
            self.accounting.rejected[f"{exc.field}:{exc.reason}"] += 1
            self.accounting.rejected_unrolls += int(numbered)
            log.warning("rejected a message: %s", exc)
            if exc.reason == "unknown_peer":
                transport.send(self.router, Rejoin(learner_run_id=self.run_id), prefix=[identity])
            return
        if isinstance(msg, Heartbeat):
            self._publish_heartbeat(self.fleet.observe(msg, now))
        elif isinstance(msg, Hello):
            self._touch(f"actor:{msg.actor_id}", now)
            self._welcome(identity, msg)
        elif isinstance(msg, Trajectory):
            if self._accept(msg):
                self.pending.append((identity, msg))  # its credit returns once trained on
            else:
                self.credits.give_back(identity)
        else:
            self.accounting.rejected[f"type:unexpected_{msg.TYPE}"] += 1

    def _touch(self, key: str, now: float) -> None:
        revived = self.fleet.touch(key, now)
        if revived is not None:
            self._publish_heartbeat(revived)

    def _welcome(self, identity: bytes, hello: Hello) -> None:
        if not 0 <= hello.num_envs <= MAX_ENVS_PER_ACTOR:
            self.accounting.rejected["num_envs:out_of_range"] += 1
            log.warning("rejected a hello claiming %d envs", hello.num_envs)
            return
        if not in_run(hello.run_id, self.run_token):
            # a launcher's actor from another run on these ports: it must not train this one
            self.accounting.rejected["run_id:other_run"] += 1
            log.warning("ignored the hello of actor %d (%s pid %d): it belongs to another run "
                        "(%s)", hello.actor_id, hello.host, hello.pid, hello.run_id)  # fmt: skip
            return
        if hello.policy_version > self.policy_version:
            # every version this run directory published is <= ours (_persist_version): this
            # actor holds weights from another run, or lies
            self.accounting.rejected["policy_version:ahead"] += 1
            log.warning("rejected the hello of actor %d (%s pid %d): it holds policy version "
                        "%d, above this learner's %d, so it is not from this run",
                        hello.actor_id, hello.host, hello.pid, hello.policy_version,
                        self.policy_version)  # fmt: skip
            return
        num_envs = hello.num_envs or self.config.actor.num_envs
        grant = self.config.learner.credits_per_env * num_envs
        credits = self.credits.register(identity, hello.actor_id, hello.run_id, grant, num_envs)
        log.info("actor %d (%s pid %d) joined with %d credits",
                 hello.actor_id, hello.host, hello.pid, credits)  # fmt: skip
        welcome = Welcome(
            learner_run_id=self.run_id,
            config_toml=self.config_toml,
            broadcast_endpoint=self.config.network.broadcast_endpoint,
            policy_version=self.policy_version,
            credits=credits,
        )
        self._persist_version()  # these weights announce it too (see _persist_version)
        transport.send(self.router, welcome, prefix=[identity])
        transport.send(self.router, self._current_weights(), prefix=[identity])

    def _accept(self, traj: Trajectory) -> bool:
        """Sort a valid, new unroll into accepted or dropped as stale; True if accepted."""
        lag = self.policy_version - int(traj.policy_version.min())
        if lag > self.config.learner.max_policy_lag:
            self.accounting.dropped_stale += 1
            return False
        self.accounting.accepted += 1
        self.accounting.accepted_by_actor[traj.actor_id] += 1
        for stats in traj.episodes:
            self.episodes.add(stats, self.env_frames, traj.actor_id)
        return True

    def _send_credits(self) -> None:
        for identity, n in self.credits.flush():
            transport.send(self.router, Credit(unrolls=n), prefix=[identity])

    def _receive(self, timeout_ms: int) -> None:
        """Read every waiting message (after up to ``timeout_ms``), then return credits.

        The queue needs no cap of its own: credits bound it to the sum of the actors' grants.
        """
        start = time.perf_counter()
        polled = self.router.poll(timeout_ms)
        handling = time.perf_counter()
        self.timing.wait_s += handling - start
        if not polled:
            return
        while True:
            try:
                frames = self.router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._handle(bytes(frames[0].buffer), frames[1:])
        self._send_credits()
        self.timing.receive_s += time.perf_counter() - handling

    # -- training ------------------------------------------------------------------------
    @property
    def _batch_pending(self) -> bool:
        """Whether the pending unrolls fill one update's fresh part."""
        return len(self.pending) >= self.learner.fresh_per_step

    def _take_fresh(self) -> tuple[list[tuple[bytes, Trajectory]], list[Trajectory], float]:
        """The oldest ``fresh_per_step`` pending unrolls (batch_size less the replayed share)
        with the connection each came from (its credit returns once trained on), the unrolls
        alone, and the budget's progress for the replay's beta."""
        taken = [self.pending.popleft() for _ in range(self.learner.fresh_per_step)]
        progress = self.env_frames / self.config.run.total_env_frames
        return taken, [traj for _, traj in taken], progress

    def _submit(self) -> tuple[list[tuple[bytes, Trajectory]], Any]:
        assert self._prefetch is not None
        taken, fresh, progress = self._take_fresh()
        return taken, self._prefetch.submit(fresh, progress)

    def _train(self) -> None:
        """Train one update if its data is there.

        With ``learner.prefetch`` the batch prepared on the worker thread is taken, the next
        one (if its unrolls are pending) is submitted, and only then is the taken one trained
        on, so the two overlap; without, the batch is prepared here, then trained on.
        """
        if self._prefetch is None:
            if not self._batch_pending:
                return
            taken, fresh, progress = self._take_fresh()
            start = time.perf_counter()
            prepared = self.learner.prepare(fresh, progress)
            self.timing.prepare_s += time.perf_counter() - start
            self._apply(taken, prepared)
            return
        if self._inflight is None:
            if not self._batch_pending:
                return
            self._inflight = self._submit()
        taken, future = self._inflight
        start = time.perf_counter()
        prepared = self._prefetch.take(future)
        self.timing.prepare_wait_s += time.perf_counter() - start
        self._inflight = self._submit() if self._batch_pending else None
        self._apply(taken, prepared)

    def _settle_prefetch(self) -> None:
        """Wait for the batch being prepared, if any (before the replay is saved)."""
        if self._inflight is not None:
            self._inflight[1].exception()

    def _apply(self, taken: list[tuple[bytes, Trajectory]], prepared: PreparedBatch) -> None:
        fresh = prepared.fresh
        lag = self.policy_version - np.stack([t.policy_version for t in fresh]).astype(np.float64)
        start = time.perf_counter()
        metrics = self.learner.apply(prepared)
        self.timing.train_s += time.perf_counter() - start
        if metrics.get("optim/skipped_nonfinite"):
            self._skipped_since_beat += 1
            log.warning(
                "update %d skipped: non-finite gradient; its fresh unrolls came from actors %s "
                "and were not added to the replay", self.learner.updates,
                sorted({t.actor_id for t in fresh}),
            )  # fmt: skip
        self.reporter.record_update(metrics, float(lag.mean()), float(lag.max()))
        self.env_frames += len(fresh) * self.frames_per_unroll
        self._publish_if_due()
        for identity, _ in taken:
            self.credits.give_back(identity)
        self._send_credits()

    def status(self, done: bool = False) -> LearnerStatus:
        """The progress and fleet figures broadcast about once a second."""
        acc, fleet = self.accounting, self.fleet.totals()
        return LearnerStatus(
            learner_run_id=self.run_id,
            policy_version=self.policy_version,
            updates=self.learner.updates,
            env_frames=self.env_frames,
            total_env_frames=self.config.run.total_env_frames,
            env_fps=self.env_fps,
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
            actors_alive=fleet.actors_alive,
            actors_stale=fleet.actors_stale,
            actors_dead=fleet.actors_dead,
            fleet_env_fps=fleet.env_fps,
            mean_policy_lag=fleet.mean_policy_lag,
            gpu_utilization=fleet.gpu_utilization,
            hints=sorted(self._hints),
            flag_rate=self.episodes.mean("flag_get"),
        )

    def _beat(self, done: bool = False) -> None:
        """Once per heartbeat interval: own heartbeat, liveness sweep, hints, status broadcast."""
        now = time.monotonic()
        self.env_fps, self.updates_per_s = self.reporter.rates(
            self.env_frames, self.learner.updates
        )
        self._update_hints()
        own = self.heartbeats.build(
            env_fps=self.env_fps,
            updates_per_s=self.updates_per_s,
            policy_version=self.policy_version,
            queue_depth=len(self.pending),
            credits=self.credits.outstanding,
            progress_age_s=self.watchdog.progress_age_s,
            stalled=self.watchdog.stalled,
            stall_file=self.watchdog.stall_file,
            counters={
                **self.accounting.as_counters(),
                **self._credit_cap_check(),
                **{f"hint:{name}": 1 for name in self._hints},
            },
        )
        self._publish_heartbeat(self.fleet.observe(own, now))
        for changed in self.fleet.sweep(now):
            self._publish_heartbeat(changed)
        self._persist_version()
        self._publish_stream(self.status(done), transport.TOPIC_STATUS)

    def _log_scalars(self) -> None:
        self.reporter.scalars(
            self.env_frames, self.env_fps, self.learner.updates, self.episodes,
            self.accounting, self.fleet.totals(),
        )  # fmt: skip

    def run(self) -> None:
        """Serve until the budget is reached or :attr:`stopping` is set; then checkpoint."""
        rc = self.config.run
        self._started = time.monotonic()
        self.watchdog.start()
        self.publish_weights()
        last_beat = last_log = last_ckpt = time.monotonic()
        while not self.stopping and self.env_frames < rc.total_env_frames:
            self.watchdog.progress()
            # wait for messages only when there is nothing to train on
            ready = self._inflight is not None or self._batch_pending
            self._receive(timeout_ms=0 if ready else 50)
            self._train()
            self._publish_if_due()  # a version held back by the interval goes out now
            now = time.monotonic()
            if now - last_beat >= self.config.telemetry.heartbeat_interval_s:
                last_beat = now
                self._beat()
            if now - last_log >= rc.log_interval_s:
                last_log = now
                self._log_scalars()
            if now - last_ckpt >= rc.checkpoint_interval_s:
                last_ckpt = now
                self.save()
        self._finish()

    def _drain_final(self, quiet_s: float = 0.3, limit_s: float = 3.0) -> None:
        """Count what is still arriving (actors stop first) so nothing sent goes uncounted."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end and self.router.poll(int(quiet_s * 1000)):
            self._receive(timeout_ms=0)

    def _finish(self) -> None:
        self._drain_final()
        self._log_scalars()
        self.save()
        if self.policy_version != self._published_version:
            # a version the interval held back: actors (and eval) end on the final policy;
            # it goes out before the last status, so an actor that stops on it has loaded it
            self.publish_weights()
        self._beat(done=not self.stopping)
        timing = self.timing
        log.info(
            "published %d weights messages (%.1f MB) in %.1f s (learner.publish_interval_s "
            "%g); final policy version %d", timing.weights_published,
            timing.weight_bytes / 1e6, time.monotonic() - self._started,
            self.config.learner.publish_interval_s, self.policy_version,
        )  # fmt: skip
        acc = self.accounting
        log.info(
            "learner stopped: %d updates, %d env frames; unrolls accepted %d, rejected %d %s, "
            "dropped stale %d, duplicates %d (sent %d, lost %d); accepted by actor %s",
            self.learner.updates, self.env_frames, acc.accepted, acc.rejected_total,
            dict(acc.rejected), acc.dropped_stale, acc.duplicates, acc.sent, acc.lost,
            dict(sorted(acc.accepted_by_actor.items())),
        )  # fmt: skip

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
        self.watchdog.stop()
        self.reporter.close()
        self.episodes.close()
        self.router.close(0)
        self.pub.close(linger=500)
        if self.auth is not None:
            self.auth.stop()


def is_loopback(endpoint: str) -> bool:
    """Whether a bind endpoint is reachable from this machine only (ipc, inproc, loopback)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp":
        return True
    host = parts.hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _bind(bind: Any, ctx: zmq.Context[Any], endpoint: str, curve: Any) -> zmq.Socket[Any]:
    """``bind(ctx, endpoint, curve=curve)``, with a failure made a :class:`PermanentFailure`
    naming the address: a port that is taken stays taken on a retry.

    Raises:
        PermanentFailure: ``ExitStatus.BIND``.
    """
    try:
        return bind(ctx, endpoint, curve=curve)
    except zmq.ZMQError as exc:
        hint = " (another run on these ports?)" if exc.errno == zmq.EADDRINUSE else ""
        raise PermanentFailure(
            ExitStatus.BIND, f"cannot bind {endpoint}: {exc.strerror}{hint}"
        ) from exc


def serve(config: schema.Config, run_dir: Path, resume: Path | None, run_token: str = "") -> int:
    """Run a learner until done or SIGTERM/SIGINT (which still writes a final checkpoint).

    Returns:
        The process exit status (:class:`protocol.exit_status.ExitStatus`): ``OK``; ``BIND``,
        ``CONFIG`` (the checkpoint does not fit the config) or ``CORRUPT_RUN_DIR`` before
        training starts; ``NO_SPACE`` when the run directory's disk fills (the checkpoints
        already written stay, and no partial file is left). Each failure is logged as one
        line first.
    """
    try:
        server = LearnerServer(config, run_dir, resume, run_token)
    except PermanentFailure as exc:
        log.error("%s", exc)
        return exc.status
    except (CheckpointError, schema.ConfigError) as exc:
        log.error("%s", exc)
        return ExitStatus.CONFIG

    def _stop(signum: int, _frame: Any) -> None:
        server.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run()
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS:
            raise
        kept = list_checkpoints(run_dir)
        log.error(
            "no space left on the run directory's disk (%s): stopping; the last checkpoint "
            "kept is %s", exc, kept[-1] if kept else "none",
        )  # fmt: skip
        return ExitStatus.NO_SPACE
    finally:
        try:
            server.close()
        except OSError as exc:  # closing flushes logs: a full disk may refuse that too
            log.error("while closing: %s", exc)
    return ExitStatus.OK
