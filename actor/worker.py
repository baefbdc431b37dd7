"""The actor process loop: join a learner, step K envs with local CPU inference, stream unrolls.

Run by: ``python -m actor`` (one process per core; the launcher starts N of them).
Owns: the actor's sockets, its CPU copy of the policy, weight pick-up, backpressure waits and
the decision that the learner is gone.

Lifecycle: send :class:`Hello`; the learner answers with :class:`Welcome` (its resolved config,
so a remote actor needs no config file) and the current :class:`Weights`; then loop forever:
act on K observations in one batch, step the envs, and every T steps send K trajectories,
each spending one of the credits the learner grants (flow control). New weights published by
the learner are loaded between steps. A heartbeat thread reports to the learner every
``telemetry.heartbeat_interval_s`` and a stall watchdog dumps thread stacks into ``stall_dir``
if the loop stops making progress. A learner that does not know this actor (it restarted, or
declared the actor dead) answers with :class:`Rejoin`; the actor says hello again. The actor
never blocks forever: if nothing at all is heard from the learner for
``actor.learner_timeout_s`` it exits with ``ExitStatus.LEARNER_LOST`` (3).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zmq

from actor.rollout import UnrollCollector, greedy_behaviour, step_envs
from configs import schema
from envs.factory import make_env
from envs.spec import num_actions, observation_spec
from models import build_model
from models.weights import WeightsMismatch, load_flat_state
from protocol import transport
from protocol.exit_status import ExitStatus
from protocol.messages import (
    Credit,
    Hello,
    LearnerStatus,
    Message,
    ProtocolError,
    Rejoin,
    Trajectory,
    TrajectorySpec,
    Weights,
    Welcome,
    in_run,
    tagged_run_id,
)
from telemetry.heartbeat import HeartbeatBuilder, HeartbeatSender, RateMeter
from telemetry.stall import StallWatchdog

log = logging.getLogger("actor")

#: While joining, how often the actor logs that it is still waiting for the learner.
WAITING_LOG_EVERY_S = 10.0


class LearnerLost(RuntimeError):
    """Nothing was heard from the learner for longer than the configured timeout."""


class Stopped(Exception):
    """SIGTERM/SIGINT arrived while waiting on the learner."""


@dataclass
class ActorOptions:
    """Per-process settings that do not come from the learner's config.

    Attributes:
        learner: the learner's unroll endpoint, e.g. ``tcp://10.0.0.5:5555``.
        actor_id: this actor's id (stable across restarts; names it in logs and counters).
        num_envs: overrides ``actor.num_envs`` from the learner's config when set.
        connect_timeout_s: how long to wait for the learner's welcome at start-up.
        stall_dir: where a stalled main loop's thread stacks are written.
        heartbeats: send heartbeats (benchmarks turn them off to measure their cost).
        run_token: join only a learner of this run (:func:`protocol.messages.in_run`); empty
            for any learner at ``learner``.
    """

    learner: str
    actor_id: int
    num_envs: int | None = None
    connect_timeout_s: float = 60.0
    stall_dir: Path = Path("stalls")
    heartbeats: bool = True
    run_token: str = ""


class Actor:
    """One actor incarnation. Construct, then :meth:`run` until stopped or the learner is lost."""

    def __init__(self, options: ActorOptions) -> None:
        self.options = options
        self.run_id = tagged_run_id(options.run_token, uuid.uuid4().hex[:12])
        self.ctx = zmq.Context.instance()
        self.dealer = transport.connect_dealer(self.ctx, options.learner)
        self.sub: zmq.Socket[Any] | None = None
        self.stopping = False
        self.last_heard = time.monotonic()
        self.policy_version = -1
        self.learner_run_id = ""
        self.sent = 0
        self.credits = 0
        self.env_frames = 0
        self.done = False
        self.learner_version: int | None = None  # latest version the learner announced
        self._hello_sent = 0.0
        self._hello_backoff = 1.0  # Paranoid Pirate: 1 -> 32 s between hellos to a silent peer
        self._drop_unroll = False  # the unroll in progress belongs to an older learner
        self.dropped_steps = 0
        self.dropped_unrolls = 0  # unrolls of envs that raised mid-unroll (rebuilt in place)
        self.watchdog = StallWatchdog(
            options.stall_dir, f"actor-{options.actor_id}", stall_after_s=60.0
        )
        self.heartbeat: HeartbeatSender | None = None
        self._awaiting_welcome = False  # a hello is out and its welcome has not come back

    # -- joining -------------------------------------------------------------------------
    def join(self) -> schema.Config:
        """Say hello and wait for the welcome and first weights.

        Raises:
            LearnerLost: no welcome within ``connect_timeout_s``.
        """
        self._say_hello()
        deadline = time.monotonic() + self.options.connect_timeout_s
        welcome: Welcome | None = None
        while welcome is None:
            msg = self._recv(self.dealer, deadline, "its welcome")
            if isinstance(msg, Welcome):
                if in_run(msg.learner_run_id, self.options.run_token):
                    welcome = msg
                else:
                    log.warning(
                        "the learner at %s (%s) belongs to another run, not to run %s: "
                        "ignoring it and waiting for this run's learner",
                        self.options.learner, msg.learner_run_id, self.options.run_token,
                    )  # fmt: skip
        config = schema.from_dict(tomllib.loads(welcome.config_toml))
        self.learner_run_id = welcome.learner_run_id
        self.credits = welcome.credits
        self._awaiting_welcome = False
        broadcast = transport.resolve_broadcast(self.options.learner, welcome.broadcast_endpoint)
        self.sub = transport.connect_sub(
            self.ctx, broadcast, (transport.TOPIC_WEIGHTS, transport.TOPIC_STATUS)
        )
        self.config = config
        # heartbeats start now: building envs can take seconds, and a silent actor is dead
        self._start_telemetry()
        self._build(config)
        while self.policy_version < 0:
            msg = self._recv(self.dealer, deadline, "its first weights")
            if isinstance(msg, Weights):
                self._load(msg)
        log.info(
            "actor %d joined learner %s (policy version %d), %d envs of %s",
            self.options.actor_id,
            welcome.learner_run_id,
            self.policy_version,
            self.num_envs,
            config.env.id,
        )
        return config

    def _say_hello(self) -> None:
        hello = Hello(
            actor_id=self.options.actor_id,
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            num_envs=self.options.num_envs or 0,
            policy_version=self.policy_version,
        )
        transport.send(self.dealer, hello)
        self._hello_sent = time.monotonic()
        # Send nothing more until the welcome: it carries this connection's credits (its grant
        # less the unrolls still in flight), counted from the hello on, so credits granted
        # before the hello and still on their way are superseded by it and ignored.
        self.credits = 0
        self._awaiting_welcome = True

    def _start_telemetry(self) -> None:
        tc = self.config.telemetry
        self.watchdog.stall_after_s = tc.stall_after_s
        self.watchdog.start()
        if not self.options.heartbeats:
            return
        builder = HeartbeatBuilder("actor", str(self.options.actor_id), self.run_id)
        meter = RateMeter()

        def figures() -> dict[str, Any]:
            lag = None
            if self.learner_version is not None and self.policy_version >= 0:
                lag = float(max(0, self.learner_version - self.policy_version))
            return {
                "env_fps": meter.rate(self.env_frames),
                "policy_version": max(self.policy_version, 0),
                "policy_lag": lag,
                "credits": self.credits,
                "progress_age_s": self.watchdog.progress_age_s,
                "stalled": self.watchdog.stalled,
                "stall_file": self.watchdog.stall_file,
                "counters": {
                    "unrolls_sent": self.sent,
                    "env_frames": self.env_frames,
                    "dropped_steps": self.dropped_steps,
                    "env_failures": self.env_failures,
                    "dropped_unrolls": self.dropped_unrolls,
                },
            }

        self.heartbeat = HeartbeatSender(
            self.ctx, self.options.learner, builder, figures, tc.heartbeat_interval_s
        )
        self.heartbeat.start()

    def _recv(self, sock: zmq.Socket[Any], deadline: float, waiting_for: str = "") -> Message:
        """One message from ``sock`` before ``deadline``; malformed ones are logged and skipped.
        With ``waiting_for`` (what is awaited, e.g. "its welcome"), the wait is logged every
        :data:`WAITING_LOG_EVERY_S`, so an unreachable learner is never a silent minute.

        Raises:
            LearnerLost: ``deadline`` passed.
            Stopped: the process was asked to stop.
        """
        next_note = time.monotonic() + WAITING_LOG_EVERY_S
        while True:
            if self.stopping:
                raise Stopped
            now = time.monotonic()
            if waiting_for and now >= next_note:
                next_note = now + WAITING_LOG_EVERY_S
                log.info(
                    "actor %d: waiting for the learner at %s (%s); giving up in %.0f s",
                    self.options.actor_id, self.options.learner, waiting_for,
                    max(0.0, deadline - now),
                )  # fmt: skip
            remaining = deadline - now
            if remaining <= 0:
                raise LearnerLost(
                    f"no answer from the learner at {self.options.learner} within "
                    f"{self.options.connect_timeout_s:.0f} s"
                )
            if sock.poll(min(remaining, 0.5) * 1000):
                try:
                    return transport.recv(sock)[1]
                except ProtocolError as exc:
                    log.warning("ignoring malformed message from the learner: %s", exc)

    def _build(self, config: schema.Config) -> None:
        torch.set_num_threads(1)
        self.num_envs = self.options.num_envs or config.actor.num_envs
        # --num-envs may be below the config's: keep at least one env sampling
        self.greedy_envs = min(config.actor.greedy_envs, self.num_envs - 1)
        if self.greedy_envs < config.actor.greedy_envs:
            log.warning("actor.greedy_envs = %d with %d envs: %d act greedily",
                        config.actor.greedy_envs, self.num_envs, self.greedy_envs)  # fmt: skip
        obs_shape, obs_dtype = observation_spec(config.env)
        actions = num_actions(config.env)
        self.model = build_model(config.model, obs_shape, actions).eval()
        self.spec = TrajectorySpec.for_run(config, self.model, obs_dtype)
        self.recurrent = self.model.state_shape != (0,)
        self._base_seed = config.run.seed + 1000 * self.options.actor_id
        self.env_failures = 0
        self.envs = []
        for i in range(self.num_envs):
            self.envs.append(make_env(config.env, seed=self._base_seed + i))
            self.watchdog.progress()  # building envs is progress, not a stall
        self.frames_per_step = config.env.frames_per_step

    def _load(self, weights: Weights) -> None:
        if weights.policy_version <= self.policy_version:
            return  # versions never go backwards, across learner restarts too
        try:
            load_flat_state(self.model, weights.layout, weights.flat)
        except WeightsMismatch as exc:
            raise ProtocolError(exc.field, exc.reason, exc.detail) from exc
        self.policy_version = weights.policy_version

    def _learner_changed(self, learner_run_id: str) -> None:
        """A different learner incarnation answers: rejoin it and drop the partial unroll."""
        if learner_run_id == self.learner_run_id:
            return
        log.warning("learner restarted (%s -> %s): saying hello again",
                    self.learner_run_id, learner_run_id)  # fmt: skip
        self.learner_run_id = learner_run_id
        self.credits = 0  # the old learner's credits mean nothing to the new one
        self._drop_unroll = True
        self._say_hello()

    # -- main loop -----------------------------------------------------------------------
    def _drain(self) -> None:
        """Apply every queued message; any message counts as liveness.

        Of the weights queued, only the newest version is loaded (once, after the queue is
        empty): a learner publishing faster than this actor drains would otherwise cost one
        model load per queued message."""
        newest: Weights | None = None
        for sock in (self.sub, self.dealer):
            while sock is not None:
                try:
                    _, msg = transport.recv(
                        sock, prefix_frames=1 if sock is self.sub else 0, flags=zmq.NOBLOCK
                    )
                except zmq.Again:
                    break
                except ProtocolError as exc:
                    log.warning("ignoring malformed broadcast: %s", exc)
                    continue
                run_id = getattr(msg, "learner_run_id", None)
                if run_id is not None and not in_run(run_id, self.options.run_token):
                    continue  # another run's learner on this endpoint: not ours, nor alive
                self.last_heard = time.monotonic()
                self._hello_backoff = 1.0
                if run_id is not None and not isinstance(msg, Rejoin):
                    self._learner_changed(run_id)
                if isinstance(msg, Weights):
                    if newest is None or msg.policy_version > newest.policy_version:
                        newest = msg
                elif isinstance(msg, Credit):
                    if not self._awaiting_welcome:
                        self.credits += msg.unrolls
                elif isinstance(msg, LearnerStatus):
                    self.learner_version = msg.policy_version
                    self.done = self.done or msg.done
                elif isinstance(msg, Welcome):  # the answer to a re-hello
                    self.credits = msg.credits
                    self._awaiting_welcome = False
                elif isinstance(msg, Rejoin) and time.monotonic() - self._hello_sent > 1.0:
                    log.warning(
                        "learner %s does not know this actor; saying hello again",
                        msg.learner_run_id,
                    )
                    self._say_hello()
        if newest is not None:
            self._load(newest)

    def _check_alive(self) -> None:
        """Say hello again, with backoff, while the learner is silent; give up at the timeout."""
        now = time.monotonic()
        silent = now - self.last_heard
        if silent > max(self.config.telemetry.stale_after_s, 2 * self._hello_backoff) and (
            now - self._hello_sent > self._hello_backoff
        ):
            self._say_hello()
            self._hello_backoff = min(32.0, 2 * self._hello_backoff)
        if silent > self.config.actor.learner_timeout_s:
            raise LearnerLost(
                f"nothing heard from the learner for {silent:.0f} s "
                f"(actor.learner_timeout_s = {self.config.actor.learner_timeout_s})"
            )

    def _send(self, traj: Trajectory) -> None:
        """Send one unroll once the learner has granted a credit (its flow control).

        While waiting, weights, credits and status keep being applied, and the learner's
        silence is timed so a dead learner ends the wait.
        """
        while not self.stopping:
            if self._drop_unroll:
                return  # made for a learner that is gone; run() starts a fresh unroll
            if self.credits > 0 and self.dealer.poll(0, zmq.POLLOUT):
                # numbered when sent, so unrolls dropped unsent leave no gap in the sequence
                traj = dataclasses.replace(traj, seq=self.sent)
                transport.send(self.dealer, traj, flags=zmq.NOBLOCK)
                self.credits -= 1
                self.sent += 1
                return
            self.dealer.poll(100)  # wake as soon as a credit arrives
            # waiting on the learner's flow control is backpressure, not a stall
            self.watchdog.progress()
            self._drain()
            self._check_alive()

    def _rebuild_env(self, index: int) -> Any:
        """A replacement for env ``index``, which raised: a fresh env with a new seed (the
        old one's would replay the same episode), counted in ``env_failures``."""
        self.env_failures += 1
        seed = self._base_seed + index + 100_000 * self.env_failures
        return make_env(self.config.env, seed=seed)

    def run(self) -> None:
        """Collect and send unrolls until stopped, the run is done, or the learner is lost.

        Raises:
            LearnerLost: see ``ExitStatus.LEARNER_LOST`` (3).
        """
        collector = UnrollCollector(self.spec, self.num_envs, self.options.actor_id, self.run_id)
        collector.reset(np.stack([env.reset()[0] for env in self.envs]))
        # the core state of every env; rows are zeroed when an episode ends, which is exactly
        # a reset, so each unroll's initial_core_state is correct without a separate flag
        core_state = self.model.initial_state(self.num_envs)
        self.model.reset_noise()
        self.last_heard = time.monotonic()
        while not self.stopping and not self.done:
            self.watchdog.progress()
            self._drain()
            self._check_alive()
            with torch.inference_mode():
                obs = torch.from_numpy(collector.current_obs)
                last_action = torch.from_numpy(collector.current_last_action)
                action, logits, core_state = self.model.act(
                    obs, core_state=core_state, last_action=last_action
                )
            actions, behaviour_logits = greedy_behaviour(
                action.numpy(), logits.numpy(), self.greedy_envs
            )
            result = step_envs(
                self.envs, actions, rebuild=self._rebuild_env, greedy_envs=self.greedy_envs
            )
            self.env_frames += self.num_envs * self.frames_per_step
            if self.recurrent:
                done = torch.from_numpy(result.terminated | result.truncated)
                core_state = core_state.masked_fill(
                    done.view(-1, *[1] * (core_state.dim() - 1)), 0.0
                )
            state = core_state.numpy() if self.recurrent else None
            sent = collector.record(actions, behaviour_logits, self.policy_version, result, state)
            self.dropped_unrolls = collector.discarded
            for traj in sent:
                self._send(traj)
            if sent:
                self.model.reset_noise()  # NoisyNet: one noise sample per unroll
            if self._drop_unroll:
                self.dropped_steps += collector.steps
                collector.reset(collector.current_obs.copy(), state, collector.current_last_action)
                self._drop_unroll = False

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat.join(timeout=2)
        self.watchdog.stop()
        for env in getattr(self, "envs", []):
            env.close()
        if self.sub is not None:
            self.sub.close(0)
        self.dealer.close(linger=1000)


def main(options: ActorOptions) -> int:
    """Run one actor until SIGTERM/SIGINT or the end of the run; returns the exit status."""
    actor = Actor(options)

    def _stop(signum: int, _frame: Any) -> None:
        actor.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        actor.join()
        actor.run()
    except LearnerLost as exc:
        log.error("actor %d: %s; exiting", options.actor_id, exc)
        return int(ExitStatus.LEARNER_LOST)
    except Stopped:
        pass
    finally:
        actor.close()
    log.info(
        "actor %d stopped after %d unrolls, %d env frames, at policy version %d",
        options.actor_id,
        actor.sent,
        actor.env_frames,
        actor.policy_version,
    )
    return 0
