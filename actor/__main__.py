"""``python -m actor --learner tcp://HOST:PORT``: one actor process joining a learner.

Run by: the launcher (one per actor slot) or by hand on any machine that reaches the learner.
Owns: command-line parsing and logging set-up for the actor; the loop is in
:mod:`actor.worker`. The run's config comes from the learner, so no config file is needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import zlib
from pathlib import Path

from actor.worker import ActorOptions, main
from configs import schema


def default_actor_id() -> int:
    """An id unlikely to collide across machines and containers: host name hash and pid."""
    host = zlib.crc32(socket.gethostname().encode()) % 100_000
    return host * 1000 + os.getpid() % 1000


def parse_args(argv: list[str] | None = None) -> ActorOptions:
    """Parse the actor's flags. Defaults may come from ``MARIO_LEARNER`` / ``MARIO_NUM_ENVS``."""
    parser = argparse.ArgumentParser(prog="python -m actor", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--learner",
        default=os.environ.get("MARIO_LEARNER", "tcp://127.0.0.1:5555"),
        help="learner unroll endpoint (env MARIO_LEARNER) [default: %(default)s]",
    )
    parser.add_argument(
        "--actor-id",
        type=int,
        default=int(os.environ.get("MARIO_ACTOR_ID", os.getpid())),
        help="this actor's id; also seeds its envs [default: the pid]",
    )
    parser.add_argument(
        "--num-envs",
        type=int,
        default=int(os.environ.get("MARIO_NUM_ENVS", 0)) or None,
        help="envs stepped by this actor [default: actor.num_envs from the learner's config]",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the learner at start-up [default: %(default)s]",
    )
    parser.add_argument(
        "--stall-dir",
        type=Path,
        default=Path(os.environ.get("MARIO_STALL_DIR", "stalls")),
        help="where a stalled actor writes its thread stacks [default: %(default)s]",
    )
    parser.add_argument(
        "--run-token",
        default="",
        help="join only a learner of the run with this token (the launcher passes it) "
        "[default: any learner at --learner]",
    )
    args = parser.parse_args(argv)
    try:
        schema.check_endpoint("--learner", args.learner)
    except schema.ConfigError as exc:
        parser.error(str(exc))  # exit 2 with one line, not a ZeroMQ traceback
    if args.num_envs is not None and args.num_envs < 1:
        parser.error("--num-envs: must be >= 1")
    return ActorOptions(
        args.learner,
        args.actor_id,
        args.num_envs,
        args.connect_timeout,
        args.stall_dir,
        run_token=args.run_token,
    )


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("MARIO_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    sys.exit(main(parse_args()))
