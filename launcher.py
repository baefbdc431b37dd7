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
import subprocess
import sys
import time
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
    """The one-line progress summary shown while training."""
    frac = s.env_frames / s.total_env_frames if s.total_env_frames else 0.0
    remaining = max(0, s.total_env_frames - s.env_frames)
    eta = remaining / s.env_fps if s.env_fps > 0 else float("inf")
    eta_txt = "--" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta))
    if eta != float("inf") and eta >= 86400:
        eta_txt = f"{eta / 86400:.1f}d"
    return (
        f"frames {human(s.env_frames)}/{human(s.total_env_frames)} ({frac:.1%}) | "
        f"{s.env_fps:,.0f} fps | updates {s.updates:,} | episodes {s.episodes:,} | "
        f"return {s.mean_return:.1f} | x_pos {s.mean_x_pos:.0f} (max {s.max_x_pos}) | "
        f"flags {s.flags} | ETA {eta_txt}"
    )


class Launcher:
    """Starts and supervises one learner and N actors for a run directory."""

    def __init__(
        self, config: schema.Config, run_dir: Path, resume: Path | None, console: Console
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.console = console
        self.stopping = False
        learner_argv = [sys.executable, "-m", "learner", "--run-dir", str(run_dir)]
        if resume is not None:
            learner_argv += ["--resume", str(resume)]
        self.learner = Child("learner", learner_argv, run_dir / "logs" / "learner.log")
        endpoint = local_endpoint(config.network.trajectory_endpoint)
        self.actors = [
            Child(
                f"actor-{i}",
                [sys.executable, "-m", "actor", "--learner", endpoint, "--actor-id", str(i)],
                run_dir / "logs" / f"actor-{i}.log",
            )
            for i in range(config.run.resolved_num_actors)
        ]
        self.status: LearnerStatus | None = None

    def _stop_all(self) -> None:
        self.learner.signal(signal.SIGTERM)
        for actor in self.actors:
            actor.signal(signal.SIGTERM)
        self.learner.wait(timeout=120)
        for actor in self.actors:
            actor.wait(timeout=10)

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
        sub = transport.connect_sub(
            ctx, local_endpoint(self.config.network.broadcast_endpoint), (transport.TOPIC_STATUS,)
        )
        self.learner.start()
        for actor in self.actors:
            actor.start()
        self.console.print(
            f"[bold]run[/] {self.run_dir}  learner + {len(self.actors)} actors "
            f"on {self.config.env.id}; logs in {self.run_dir / 'logs'}"
        )
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
                rc = self.learner.poll()
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
        self._stop_all()
        sub.close(0)
        if self.status is not None:
            self.console.print(progress_line(self.status), highlight=False)
        if error:
            self.console.print(f"[bold red]error:[/] {error}", highlight=False)
            return 1
        rc = self.learner.poll()
        if rc not in (0, None):
            self.console.print(
                f"[bold red]error:[/] learner exited with status {rc}; see "
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
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    console = Console(stderr=False)
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

    def _stop(signum: int, _frame: Any) -> None:
        launcher.stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return launcher.run()


SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name -> (module with a ``main(argv: list[str]) -> int``, one-line help)
    "eval": ("evaluation.cli", "evaluate a checkpoint or a baseline on stages, with videos"),
}
"""Subcommands beyond training; each lives in its own module and owns its flags."""


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
