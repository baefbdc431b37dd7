"""``python -m learner``: one learner process, binding the configured endpoints.

Run by: the launcher (with ``--run-dir``), or by hand on the training machine.
Owns: command-line parsing, run-directory set-up and logging for the learner; the serving loop
is :mod:`learner.server`. The resolved config is written to ``RUN_DIR/config.toml``; when that
file already exists (a launcher-made run, or a resume) it is the base for any overrides.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from configs import schema
from configs.cli import DEFAULT_CONFIG, add_config_arguments, config_from_args
from learner.checkpoint import (
    CheckpointError,
    auto_resume,
    check_resume,
    resolve_resume,
)
from learner.server import serve
from protocol.exit_status import ExitStatus, of_write_error

log = logging.getLogger("learner")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learner", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="run directory [default: runs/<timestamp>]"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="PATH|latest|auto",
        help="continue from a checkpoint file, a run directory, or 'latest'; 'auto' continues "
        "from --run-dir's newest checkpoint if it has one and starts fresh otherwise (what a "
        "restarted container wants)",
    )
    parser.add_argument(
        "--run-token",
        default="",
        help="the launcher's run token: only actors given the same one take this learner's "
        "messages (so two runs on the same ports never merge) [default: none]",
    )
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    run_dir = args.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    saved = run_dir / "config.toml"
    try:
        fallback = saved if saved.is_file() else DEFAULT_CONFIG
        config = config_from_args(args, fallback=fallback)
        if args.resume == "auto":
            resume = auto_resume(run_dir)
        else:
            resume = resolve_resume(args.resume, args.run_dir) if args.resume else None
        if resume is not None:  # before config.toml is rewritten, as the launcher does
            check_resume(resume, config)
    except (schema.ConfigError, CheckpointError) as exc:
        log.error("%s", exc)
        return ExitStatus.CONFIG
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        schema.save(config, saved)
    except OSError as exc:
        log.error("--run-dir %s: cannot write the run directory: %s", run_dir, exc.strerror or exc)
        return of_write_error(exc)
    return serve(config, run_dir, resume, args.run_token)


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("MARIO_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    sys.exit(main())
