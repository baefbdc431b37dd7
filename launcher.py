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
import importlib.util
import logging
import os
import signal
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from configs import schema
from configs.cli import DEFAULT_CONFIG, add_config_arguments, config_from_args, overrides_from_args
from launch.run import Launcher, RemoteLearner
from learner.checkpoint import CheckpointError, check_resume, resolve_resume
from protocol.exit_status import of_write_error

log = logging.getLogger("launcher")


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
            # before config.toml is rewritten: a failed resume must leave the run as it was
            check_resume(resume, config)
        else:
            run_dir = args.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
            config = config_from_args(args)
    except (schema.ConfigError, CheckpointError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    if config.run.wandb_project and importlib.util.find_spec("wandb") is None:
        console.print("[bold red]error:[/] run.wandb_project: needs the wandb package: "
                      "uv sync --extra wandb (or pip install wandb)", highlight=False)  # fmt: skip
        return 2
    run_dir = run_dir.resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        schema.save(config, run_dir / "config.toml")
    except OSError as exc:
        console.print(f"[bold red]error:[/] --run-dir {run_dir}: cannot write the run directory: "
                      f"{exc.strerror or exc}", highlight=False)  # fmt: skip
        return int(of_write_error(exc))
    launcher = Launcher(config, run_dir, resume, console)
    _install_stop(launcher)
    return launcher.run()


SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name -> (module with a ``main(argv: list[str]) -> int``, one-line help)
    "eval": ("evaluation.cli", "evaluate a checkpoint or a baseline on stages, with videos"),
    "monitor": ("telemetry.monitor", "watch a learner's fleet live (or --json lines)"),
    "dashboard": ("telemetry.dashboard", "a live web page of the fleet and learning curves"),
    "tune": ("tuning.tune", "hyperparameter search with Optuna"),
    "keys": ("launch.keys", "create CURVE certificates for the learner and actor machines"),
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
        # the default preset's values until the learner's Welcome brings the run's config
        config = schema.load(DEFAULT_CONFIG, overrides_from_args(args))
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
        module = importlib.import_module(SUBCOMMANDS[args[0]][0])
        return int(module.main(args[1:]))
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
