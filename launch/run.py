"""Running one training job: start, supervise and stop the learner and actors.

Run by: the launcher (``launcher.py``, and ``--actors-only`` on other machines). Owns the
children of one run, the restart decisions (see :mod:`launch.supervisor`), killing actors the
learner declares dead, the live progress line and a clean stop (actors first, then the learner,
which writes a final checkpoint).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq
from rich.console import Console
from rich.live import Live
from rich.text import Text

from configs import schema
from launch.progress import WAITING_AFTER_S, progress_line, waiting_line
from launch.supervisor import Child, RestartPolicy
from learner.checkpoint import newest_loadable
from protocol import transport
from protocol.exit_status import ExitStatus, is_permanent
from protocol.messages import Heartbeat, LearnerStatus, ProtocolError, in_run
from protocol.security import client_env
from telemetry.heartbeat import HeartbeatBuilder, HeartbeatSender
from telemetry.registry import register, unregister

log = logging.getLogger("launcher")


def local_endpoint(endpoint: str) -> str:
    """The address local processes connect to for a bound endpoint (wildcards -> loopback)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "tcp" and parts.hostname in ("*", "0.0.0.0", "::", None):
        return f"tcp://127.0.0.1:{parts.port}"
    return endpoint


@dataclass(frozen=True)
class RemoteLearner:
    """Where an ``--actors-only`` launcher finds a learner running on another machine."""

    trajectory_endpoint: str
    broadcast_endpoint: str
    actor_id_base: int


class GiveUp(RuntimeError):
    """A process failed for good: more often than the restart policy allows, or with a
    permanent exit status (:mod:`protocol.exit_status`). The message says which and why;
    ``status`` is what the launcher exits with."""

    def __init__(self, message: str, status: int = ExitStatus.FAILED) -> None:
        super().__init__(message)
        self.status = status


def last_line(child: Child) -> str:
    """The last non-empty line of a child's log: a permanent failure's one-line reason."""
    lines = [line for line in child.tail(5).splitlines() if line.strip()]
    return lines[-1] if lines else "(no log)"


class Launcher:
    """Starts and supervises one learner and N actors (plus an eval actor) for a run.

    Supervision: an actor that exits, crashes or is declared dead by the learner's fleet view
    (and stays so for another ``telemetry.dead_after_s``) is restarted (a new process, so a
    new run id) after a backoff of 1 s doubling to 30 s; a learner that crashes is restarted
    from the run's latest checkpoint; a process that fails more than ``run.max_restarts``
    times within ``run.restart_window_s`` ends the run with a clear message and exit status 1.
    The eval actor never ends the run.

    With ``remote`` set, only the actors are started, against a learner elsewhere; their
    config (env, model, unroll length) then comes from that learner's welcome.
    """

    def __init__(
        self,
        config: schema.Config,
        run_dir: Path,
        resume: Path | None,
        console: Console,
        remote: RemoteLearner | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.console = console
        self.stopping = False
        self.remote = remote
        rc = config.run
        self.policy = RestartPolicy(rc.max_restarts, rc.restart_window_s)
        self.learner: Child | None = None
        # ties this run's learner and actors together: two runs on the same ports never merge
        self.run_token = uuid.uuid4().hex[:8] if remote is None else ""
        if remote is None:
            self.learner = Child("learner", self._learner_argv(resume), run_dir / "logs" /
                                 "learner.log")  # fmt: skip
            endpoint = local_endpoint(config.network.trajectory_endpoint)
            self.broadcast = local_endpoint(config.network.broadcast_endpoint)
            id_base = 0
        else:
            endpoint, self.broadcast = remote.trajectory_endpoint, remote.broadcast_endpoint
            id_base = remote.actor_id_base
        self.trajectory_endpoint = endpoint
        self.actors = {
            str(id_base + i): Child(
                f"actor-{id_base + i}",
                [sys.executable, "-m", "actor", "--learner", endpoint,
                 "--actor-id", str(id_base + i), "--stall-dir", str(run_dir / "stalls"),
                 "--run-token", self.run_token],
                run_dir / "logs" / f"actor-{id_base + i}.log",
            )
            for i in range(rc.resolved_num_actors)
        }  # fmt: skip
        # the eval actor plays the latest weights on its own; it never fails the run
        self.eval_actor: Child | None = None
        if remote is None and config.eval.interval_updates > 0:
            self.eval_actor = Child(
                "eval",
                [sys.executable, "-m", "evaluation.actor", "--run-dir", str(run_dir),
                 "--broadcast", self.broadcast],
                run_dir / "logs" / "eval.log",
            )  # fmt: skip
        self.status: LearnerStatus | None = None
        self.dead_since: dict[str, tuple[float, int]] = {}  # actor id -> (declared dead, pid)

    def _learner_argv(self, resume: Path | None) -> list[str]:
        argv = [sys.executable, "-m", "learner", "--run-dir", str(self.run_dir),
                "--run-token", self.run_token]  # fmt: skip
        return argv + (["--resume", str(resume)] if resume is not None else [])

    @property
    def children(self) -> list[Child]:
        """Every supervised process but the learner."""
        return list(self.actors.values()) + ([self.eval_actor] if self.eval_actor else [])

    def _start_heartbeats(self, ctx: zmq.Context[Any]) -> HeartbeatSender:
        builder = HeartbeatBuilder("launcher", socket.gethostname(), uuid.uuid4().hex[:12])

        def figures() -> dict[str, Any]:
            children = [*self.children, *([self.learner] if self.learner else [])]
            return {
                "counters": {
                    "actors_running": sum(a.running for a in self.actors.values()),
                    "restarts": sum(c.restarts for c in children),
                }
            }

        sender = HeartbeatSender(
            ctx, self.trajectory_endpoint, builder, figures,
            self.config.telemetry.heartbeat_interval_s,
        )  # fmt: skip
        sender.start()
        return sender

    def _stop_all(self) -> None:
        """Actors first, so the learner still counts their last unrolls; then the learner."""
        for child in self.children:
            child.signal(signal.SIGTERM)
        for child in self.children:
            child.wait(timeout=15)
        if self.learner is not None:
            self.learner.signal(signal.SIGTERM)
            self.learner.wait(timeout=120)
        for child in [*self.children, *([self.learner] if self.learner else [])]:
            child.close()

    def _on_heartbeat(self, hb: Heartbeat) -> None:
        """Note when one of our actors is declared dead, or comes back."""
        child = self.actors.get(hb.id) if hb.role == "actor" else None
        if child is None or hb.pid != child.pid:
            return
        if hb.state == "dead":
            self.dead_since.setdefault(hb.id, (time.monotonic(), hb.pid))
        else:
            self.dead_since.pop(hb.id, None)

    def _reap_dead(self) -> None:
        """Kill actors that stayed dead for another ``dead_after_s`` (a grace period in which a
        paused process may come back); supervision then restarts them."""
        grace = self.config.telemetry.dead_after_s
        for actor_id, (since, pid) in list(self.dead_since.items()):
            child = self.actors[actor_id]
            if child.pid != pid or not child.running:
                del self.dead_since[actor_id]
            elif time.monotonic() - since >= grace:
                log.warning("%s (pid %d) declared dead by the learner: killing it to restart it",
                            child.name, pid)  # fmt: skip
                child.kill()
                del self.dead_since[actor_id]

    def _restart(self, child: Child, rc: int, fatal: bool) -> None:
        """Schedule a restart after a failure, or give up (raise if ``fatal``). A permanent
        exit status is never restarted: the run stops at once with the child's reason."""
        if is_permanent(rc):
            message = (
                f"{child.name} cannot run ({ExitStatus(rc).name.lower()}, exit status {rc}): "
                f"{last_line(child)}"
            )
        else:
            delay = child.schedule_restart(self.policy)
            if delay is not None:
                log.warning("%s exited with status %s; restarting in %.0f s", child.name, rc, delay)
                return
            message = (
                f"{child.name} failed {len(child.failures)} times within "
                f"{self.policy.window_s:.0f} s (last exit status {rc}; run.max_restarts = "
                f"{self.policy.max_restarts}); last log lines of {child.log_path}:\n{child.tail()}"
            )
            rc = ExitStatus.FAILED
        if fatal:
            raise GiveUp(message, rc)
        log.warning("giving up on it: %s", message)
        child.proc = None  # given up: not polled (nor reported) again

    def _supervise(self) -> bool:
        """One supervision pass; True when the run is over (the learner finished).

        Raises:
            GiveUp: an actor or the learner failed too often.
        """
        self._reap_dead()
        for child in self.children:
            if child.due():
                child.restarts += 1
                child.start()
                continue
            rc = child.poll()
            if rc is None or (child is self.eval_actor and rc == 0):
                continue  # running, waiting to restart, or an eval actor that is done
            self._restart(child, rc, fatal=child is not self.eval_actor)
        if self.learner is None:
            return self.status is not None and self.status.done
        if self.learner.due():
            resume = newest_loadable(self.run_dir)  # a corrupt newest one is skipped, logged
            log.warning("restarting the learner from %s", resume or "scratch (no checkpoint)")
            self.learner.restarts += 1
            self.learner.start(self._learner_argv(resume))
            return False
        rc = self.learner.poll()
        if rc == 0:
            return True
        if rc is not None:
            self._restart(self.learner, rc, fatal=True)
        return False

    def run(self) -> int:
        """Supervise until the learner finishes, a process fails for good, or a stop signal."""
        sec = self.config.security
        if sec.curve:
            # every socket made from here on, ours and our children's, is a CURVE client
            os.environ.update(client_env(Path(sec.keys_dir).resolve(), sec.client_name))
        ctx = zmq.Context.instance()
        sub = transport.connect_sub(
            ctx, self.broadcast, (transport.TOPIC_STATUS, transport.TOPIC_HEARTBEAT)
        )
        heartbeats = self._start_heartbeats(ctx)
        entry = register(self.broadcast, self.run_dir) if self.learner is not None else None
        if self.learner is not None:
            self.learner.start()
            what = f"learner + {len(self.actors)} actors on {self.config.env.id}"
            if self.eval_actor is not None:
                self.eval_actor.start()
                what += " + eval actor"
        else:
            what = f"{len(self.actors)} actors for the learner at {self.trajectory_endpoint}"
        for actor in self.actors.values():
            actor.start()
        self.console.print(f"[bold]run[/] {self.run_dir}  {what}; logs in {self.run_dir / 'logs'}")
        error: str | None = None
        status = ExitStatus.OK
        interactive = self.console.is_terminal
        last_plain = 0.0
        last_status = time.monotonic()  # no status yet: the wait counts from the start
        live_view = (
            Live(Text("starting..."), console=self.console, auto_refresh=False, transient=False)
            if interactive
            else _NullLive()
        )
        with live_view as live:

            def show(line: str) -> None:
                """The progress line: live in a terminal, else printed every log interval."""
                nonlocal last_plain
                if interactive:
                    live.update(Text(line), refresh=True)
                elif time.monotonic() - last_plain >= self.config.run.log_interval_s:
                    last_plain = time.monotonic()
                    self.console.print(line, highlight=False)

            while not self.stopping:
                if sub.poll(200):
                    try:
                        _, msg = transport.recv(sub, prefix_frames=1)
                    except ProtocolError as exc:
                        log.warning("bad broadcast: %s", exc)
                        continue
                    if isinstance(msg, Heartbeat):
                        self._on_heartbeat(msg)
                    elif isinstance(msg, LearnerStatus):
                        if not in_run(msg.learner_run_id, self.run_token):
                            continue  # another run's learner on our ports: not our progress
                        self.status = msg
                        last_status = time.monotonic()
                        show(progress_line(msg))
                silent = time.monotonic() - last_status
                if silent >= WAITING_AFTER_S:
                    show(
                        waiting_line(
                            self.trajectory_endpoint, silent, len(self.actors),
                            own_learner=self.learner is not None and self.status is None,
                        )
                    )  # fmt: skip
                try:
                    if self._supervise():
                        break
                except GiveUp as exc:
                    error, status = str(exc), exc.status
                    break
        self._stop_all()
        heartbeats.stop()
        if entry is not None:
            unregister(entry)
        sub.close(0)
        if self.status is not None:
            self.console.print(progress_line(self.status), highlight=False)
        if error:
            self.console.print(f"[bold red]error:[/] {error}", highlight=False)
            return int(status)
        if self.learner is None:
            self.console.print("[bold green]done[/]: actors stopped")
            return 0
        rc = self.learner.proc.returncode if self.learner.proc is not None else None
        if self.stopping and rc in (-signal.SIGTERM, -signal.SIGINT):
            # our own stop reached it before it had installed its handler (still importing):
            # a clean stop, only without a final checkpoint
            self.console.print(
                "[bold green]stopped[/]: the learner was stopped while starting, before its "
                f"first checkpoint; logs in {self.run_dir / 'logs'}"
            )
            return 0
        if rc not in (0, None):
            self.console.print(
                f"[bold red]error:[/] learner exited with status {rc} while stopping; see "
                f"{self.learner.log_path}:\n{self.learner.tail()}",
                highlight=False,
            )
            return 1
        self.console.print(
            f"[bold green]done[/]: checkpoints in {self.run_dir / 'checkpoints'}; "
            f"view with: uv run tensorboard --logdir {self.run_dir}"
        )
        return 0


class _NullLive:
    """Stands in for rich's Live when stdout is not a terminal (logs, CI)."""

    def __enter__(self) -> _NullLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None
