"""``uv run launcher.py``: train Mario with one learner and N actor processes on this machine.

Run by: the user. Owns the terminal: it resolves the config (TOML + ``--section.field``
overrides), writes it into the run directory, starts and supervises the learner and the actors
(each logging to ``RUN_DIR/logs/``), shows one live progress line from the learner's status
broadcasts, and stops everything cleanly on Ctrl+C or SIGTERM (the learner writes a final
checkpoint). It exits 0 when the frame budget is reached or it is stopped, and non-zero with the
failing process's log tail when a process fails for good.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import zmq
from rich.console import Console
from rich.live import Live
from rich.text import Text

from configs import schema
from configs.cli import add_config_arguments, config_from_args, overrides_from_args
from learner.checkpoint import CheckpointError, resolve_resume
from protocol import transport
from protocol.messages import LearnerStatus, ProtocolError
from telemetry.heartbeat import HeartbeatBuilder, HeartbeatSender
from telemetry.registry import register, unregister

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("launcher")


@dataclass
class Child:
    """One supervised process and how often it was restarted."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - held for the child's life
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def local_endpoint(endpoint: str) -> str:
    """The address local processes connect to for a bound endpoint (wildcards -> loopback)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "tcp" and parts.hostname in ("*", "0.0.0.0", "::", None):
        return f"tcp://127.0.0.1:{parts.port}"
    return endpoint


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def progress_line(s: LearnerStatus) -> str:
    """The one-line progress summary, from the learner's fleet-wide status broadcast."""
    frac = s.env_frames / s.total_env_frames if s.total_env_frames else 0.0
    remaining = max(0, s.total_env_frames - s.env_frames)
    eta = remaining / s.env_fps if s.env_fps > 0 else float("inf")
    eta_txt = "--" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta))
    if eta != float("inf") and eta >= 86400:
        eta_txt = f"{eta / 86400:.1f}d"
    actors = f"actors {s.actors_alive}" + (f" (+{s.actors_stale} stale)" if s.actors_stale else "")
    if s.actors_dead:
        actors += f" ({s.actors_dead} dead)"
    return (
        f"frames {human(s.env_frames)}/{human(s.total_env_frames)} ({frac:.1%}) | "
        f"{s.env_fps:,.0f} fps | updates {s.updates:,} | {actors} | episodes {s.episodes:,} | "
        f"return {s.mean_return:.1f} | x_pos {s.mean_x_pos:.0f} (max {s.max_x_pos}) | "
        f"flags {s.flags} | ETA {eta_txt}"
    )


@dataclass(frozen=True)
class RemoteLearner:
    """Where an ``--actors-only`` launcher finds a learner running on another machine."""

    trajectory_endpoint: str
    broadcast_endpoint: str
    actor_id_base: int


class Launcher:
    """Starts and supervises one learner and N actors for a run directory.

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
        self.learner: Child | None = None
        if remote is None:
            learner_argv = [sys.executable, "-m", "learner", "--run-dir", str(run_dir)]
            if resume is not None:
                learner_argv += ["--resume", str(resume)]
            self.learner = Child("learner", learner_argv, run_dir / "logs" / "learner.log")
            endpoint = local_endpoint(config.network.trajectory_endpoint)
            self.broadcast = local_endpoint(config.network.broadcast_endpoint)
            id_base = 0
        else:
            endpoint, self.broadcast = remote.trajectory_endpoint, remote.broadcast_endpoint
            id_base = remote.actor_id_base
        self.actors = [
            Child(
                f"actor-{id_base + i}",
                [
                    sys.executable,
                    "-m",
                    "actor",
                    "--learner",
                    endpoint,
                    "--actor-id",
                    str(id_base + i),
                    "--stall-dir",
                    str(run_dir / "stalls"),
                ],
                run_dir / "logs" / f"actor-{id_base + i}.log",
            )
            for i in range(config.run.resolved_num_actors)
        ]
        self.status: LearnerStatus | None = None
        self.trajectory_endpoint = endpoint
        # the eval actor plays the latest weights on its own; it never fails the run
        self.eval_actor: Child | None = None
        if remote is None and config.eval.interval_updates > 0:
            self.eval_actor = Child(
                "eval",
                [sys.executable, "-m", "evaluation.actor", "--run-dir", str(run_dir),
                 "--broadcast", self.broadcast],
                run_dir / "logs" / "eval.log",
            )  # fmt: skip

    def _start_heartbeats(self, ctx: zmq.Context[Any]) -> HeartbeatSender:
        builder = HeartbeatBuilder("launcher", socket.gethostname(), uuid.uuid4().hex[:12])

        def figures() -> dict[str, Any]:
            running = sum(a.poll() is None and a.proc is not None for a in self.actors)
            restarts = sum(a.restarts for a in self.actors)
            return {"counters": {"actors_running": running, "actor_restarts": restarts}}

        sender = HeartbeatSender(
            ctx, self.trajectory_endpoint, builder, figures,
            self.config.telemetry.heartbeat_interval_s,
        )  # fmt: skip
        sender.start()
        return sender

    @property
    def children(self) -> list[Child]:
        """Every supervised process but the learner."""
        return self.actors + ([self.eval_actor] if self.eval_actor is not None else [])

    def _stop_all(self) -> None:
        if self.learner is not None:
            self.learner.signal(signal.SIGTERM)
        for child in self.children:
            child.signal(signal.SIGTERM)
        if self.learner is not None:
            self.learner.wait(timeout=120)
        for actor in self.children:
            actor.wait(timeout=10)

    def _supervise_eval(self) -> None:
        """Restart a failed eval actor up to ``run.max_restarts`` times; exit 0 means done."""
        child = self.eval_actor
        rc = None if child is None else child.poll()
        if child is None or rc is None or rc == 0:
            return
        if child.restarts >= self.config.run.max_restarts:
            log.warning("eval actor exited with status %s; leaving it stopped:\n%s",
                        rc, child.tail())  # fmt: skip
            self.eval_actor = None
            return
        child.restarts += 1
        log.warning("eval actor exited with status %s; restarting (%d)", rc, child.restarts)
        child.start()

    def _supervise_actors(self) -> str | None:
        """Restart actors that exited; returns an error once one fails too often."""
        for actor in self.actors:
            rc = actor.poll()
            if rc is None:
                continue
            if actor.restarts >= self.config.run.max_restarts:
                return (
                    f"{actor.name} exited with status {rc} after {actor.restarts} restarts "
                    f"(run.max_restarts = {self.config.run.max_restarts}); last log lines of "
                    f"{actor.log_path}:\n{actor.tail()}"
                )
            actor.restarts += 1
            log.warning("%s exited with status %s; restarting (%d)", actor.name, rc, actor.restarts)
            actor.start()
        return None

    def run(self) -> int:
        """Supervise until the learner finishes, fails, or a stop signal arrives."""
        ctx = zmq.Context.instance()
        sub = transport.connect_sub(ctx, self.broadcast, (transport.TOPIC_STATUS,))
        heartbeats = self._start_heartbeats(ctx)
        entry = register(self.broadcast, self.run_dir) if self.learner is not None else None
        if self.learner is not None:
            self.learner.start()
            what = f"learner + {len(self.actors)} actors on {self.config.env.id}"
            if self.eval_actor is not None:
                self.eval_actor.start()
                what += " + eval actor"
        else:
            what = f"{len(self.actors)} actors for the learner at {self.actors[0].argv[4]}"
        for actor in self.actors:
            actor.start()
        self.console.print(f"[bold]run[/] {self.run_dir}  {what}; logs in {self.run_dir / 'logs'}")
        error: str | None = None
        interactive = self.console.is_terminal
        last_plain = 0.0
        with (
            Live(Text("starting..."), console=self.console, auto_refresh=False, transient=False)
            if interactive
            else _NullLive() as live
        ):
            while True:
                if sub.poll(200):
                    try:
                        _, msg = transport.recv(sub, prefix_frames=1)
                    except ProtocolError as exc:
                        log.warning("bad status message: %s", exc)
                        continue
                    if isinstance(msg, LearnerStatus):
                        self.status = msg
                        line = progress_line(msg)
                        if interactive:
                            live.update(Text(line), refresh=True)
                        elif time.monotonic() - last_plain >= self.config.run.log_interval_s:
                            last_plain = time.monotonic()
                            self.console.print(line, highlight=False)
                if self.stopping:
                    break
                if self.remote is not None and self.status is not None and self.status.done:
                    break  # the remote learner reached its budget
                rc = self.learner.poll() if self.learner is not None else None
                if rc is not None:
                    if rc != 0:
                        error = (
                            f"learner exited with status {rc}; last log lines of "
                            f"{self.learner.log_path}:\n{self.learner.tail()}"
                        )
                    break
                error = self._supervise_actors()
                if error:
                    break
                self._supervise_eval()
        self._stop_all()
        heartbeats.stop()
        if entry is not None:
            unregister(entry)
        sub.close(0)
        if self.status is not None:
            self.console.print(progress_line(self.status), highlight=False)
        if error:
            self.console.print(f"[bold red]error:[/] {error}", highlight=False)
            return 1
        rc = self.learner.poll() if self.learner is not None else None
        if self.learner is not None and rc not in (0, None):
            self.console.print(
                f"[bold red]error:[/] learner exited with status {rc}; see "
                f"{self.learner.log_path}:\n{self.learner.tail()}",
                highlight=False,
            )
            return 1
        if self.learner is None:
            self.console.print("[bold green]done[/]: actors stopped")
            return 0
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


def train(argv: list[str]) -> int:
    """The default command: resolve the config, then launch and supervise a run."""
    parser = argparse.ArgumentParser(
        prog="launcher.py",
        description="Train a Super Mario Bros agent (IMPALA / V-trace).",
        epilog="Subcommands: "
        + "; ".join(f"{name}: {text}" for name, (_, text) in SUBCOMMANDS.items())
        + ". Run `launcher.py SUBCOMMAND --help` for theirs.",
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="run directory [default: runs/<timestamp>]"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="PATH|latest",
        help="continue a run from a checkpoint file, run directory or 'latest'",
    )
    remote = parser.add_argument_group("actors only (scale out to another machine)")
    remote.add_argument(
        "--actors-only",
        action="store_true",
        help="start only supervised actors, against a learner elsewhere",
    )
    remote.add_argument(
        "--learner",
        default=os.environ.get("MARIO_LEARNER"),
        metavar="tcp://HOST:PORT",
        help="the learner's unroll endpoint (env MARIO_LEARNER)",
    )
    remote.add_argument(
        "--broadcast",
        default=os.environ.get("MARIO_BROADCAST"),
        metavar="tcp://HOST:PORT",
        help="the learner's broadcast endpoint [default: learner port + 1] (env MARIO_BROADCAST)",
    )
    remote.add_argument(
        "-n",
        "--num-actors",
        type=int,
        default=None,
        help="actors to start (same as --run.num_actors)",
    )
    remote.add_argument(
        "--actor-id-base",
        type=int,
        default=None,
        help="first actor id [default: derived from the host name, so machines do not collide]",
    )
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.num_actors is not None:
        if args.num_actors < 1:
            parser.error("--num-actors: must be >= 1")
        setattr(args, "override:run.num_actors", str(args.num_actors))
    console = Console(stderr=False)
    if args.actors_only:
        return actors_only(args, console)
    try:
        resume = resolve_resume(args.resume, args.run_dir) if args.resume else None
        if resume is not None:
            run_dir = args.run_dir or resume.parent.parent
            saved = run_dir / "config.toml"
            base = args.config or (saved if saved.is_file() else None)
            config = schema.load(base, overrides_from_args(args))
        else:
            run_dir = args.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
            config = config_from_args(args)
    except (schema.ConfigError, CheckpointError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    schema.save(config, run_dir / "config.toml")
    launcher = Launcher(config, run_dir, resume, console)
    _install_stop(launcher)
    return launcher.run()


SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name -> (module with a ``main(argv: list[str]) -> int``, one-line help)
    "eval": ("evaluation.cli", "evaluate a checkpoint or a baseline on stages, with videos"),
    "monitor": ("telemetry.monitor", "watch a learner's fleet live (or --json lines)"),
}
"""Subcommands beyond training; each lives in its own module and owns its flags."""


def default_broadcast(learner: str) -> str:
    """The learner's PUB endpoint by convention: same host, unroll port + 1."""
    parts = urlsplit(learner)
    if parts.scheme != "tcp" or parts.port is None:
        raise schema.ConfigError(f"--learner: expected tcp://HOST:PORT, got {learner!r}")
    return f"tcp://{parts.netloc.rsplit(':', 1)[0]}:{parts.port + 1}"


def actors_only(args: argparse.Namespace, console: Console) -> int:
    """``--actors-only``: supervise N actors against a remote learner until it is done."""
    try:
        if not args.learner:
            raise schema.ConfigError("--learner: required with --actors-only (or MARIO_LEARNER)")
        broadcast = args.broadcast or default_broadcast(args.learner)
        config = schema.load(None, overrides_from_args(args))
    except schema.ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    host = socket.gethostname()
    id_base = args.actor_id_base
    if id_base is None:
        id_base = (zlib.crc32(host.encode()) % 100_000) * 1000
    run_dir = args.run_dir or Path("runs") / f"actors-{host}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(
        config, run_dir, None, console, RemoteLearner(args.learner, broadcast, id_base)
    )
    _install_stop(launcher)
    return launcher.run()


def _install_stop(launcher: Launcher) -> None:
    def _stop(signum: int, _frame: Any) -> None:
        launcher.stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def main(argv: list[str] | None = None) -> int:
    """``launcher.py [SUBCOMMAND] ...``: train by default, else dispatch to a subcommand."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[args[0]][0])
        return int(module.main(args[1:]))
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
