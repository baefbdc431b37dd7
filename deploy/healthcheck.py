"""``python -m deploy.healthcheck``: is the learner alive? Exit 0 if it broadcasts a status.

Run by: Docker's ``HEALTHCHECK`` (learner and actor images), Kubernetes probes, and the compose
``monitor`` service (with ``--follow``). Owns: finding the learner's broadcast endpoint from the
container's environment, and judging liveness from the learner's ``LearnerStatus`` broadcasts
(topic ``status``, about one a second).

A subscriber only receives what is published after it connects, so any status that arrives is
fresh: the learner's serving loop ran within the timeout. Exit status 0 means "a status arrived
within ``--timeout`` seconds", 1 means "none did" (or only malformed ones), each with one line
saying which endpoint was asked and what came back.

In an actor container the same check asks the learner the actor reports to: it says whether that
learner is reachable and serving, not whether the actor itself is stepping. TODO(issue 4): move
both checks to the heartbeat stream once it exists, so each process reports its own liveness.

``--follow`` turns the check into a monitor: it prints the launcher's progress line every
``--interval`` seconds (or every status as a JSON object with ``--json``) until the learner says
it is done (exit 0) or falls silent for ``--timeout`` seconds (exit 1). It stands in for a
``launcher.py monitor`` subcommand, which does not exist yet.

Where the endpoint comes from, first match wins:

1. ``--endpoint tcp://HOST:PORT``;
2. ``MARIO_BROADCAST`` (as for ``launcher.py --actors-only``);
3. ``MARIO_NETWORK__BROADCAST_ENDPOINT`` (the learner container's bound endpoint; a wildcard
   host such as ``*`` means this machine, so it asks 127.0.0.1);
4. ``MARIO_LEARNER`` with its port + 1 (the launcher's convention for the broadcast port);
5. ``tcp://127.0.0.1:5556`` (the default config's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import zmq

from protocol import transport
from protocol.messages import LearnerStatus, ProtocolError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


def _loopback_if_wildcard(endpoint: str) -> str:
    """``tcp://*:5556`` -> ``tcp://127.0.0.1:5556``: a bound wildcard is reached locally.

    (Same rule as ``launcher.local_endpoint``; not imported from there because the launcher
    module pulls in torch, which would make every health check seconds slower.)
    """
    parts = urlsplit(endpoint)
    if parts.scheme == "tcp" and parts.hostname in ("*", "0.0.0.0", "::", None):
        return f"tcp://127.0.0.1:{parts.port}"
    return endpoint


def _next_port(endpoint: str) -> str:
    """``tcp://HOST:5555`` -> ``tcp://HOST:5556`` (the launcher's broadcast-port convention)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp" or parts.port is None:
        raise ValueError(f"MARIO_LEARNER: expected tcp://HOST:PORT, got {endpoint!r}")
    return f"tcp://{parts.netloc.rsplit(':', 1)[0]}:{parts.port + 1}"


def resolve_endpoint(flag: str | None, environ: Mapping[str, str]) -> str:
    """The broadcast endpoint to ask; see the module docstring for the order."""
    if flag:
        return flag
    if environ.get("MARIO_BROADCAST"):
        return environ["MARIO_BROADCAST"]
    if environ.get("MARIO_NETWORK__BROADCAST_ENDPOINT"):
        return _loopback_if_wildcard(environ["MARIO_NETWORK__BROADCAST_ENDPOINT"])
    if environ.get("MARIO_LEARNER"):
        return _loopback_if_wildcard(_next_port(environ["MARIO_LEARNER"]))
    return DEFAULT_ENDPOINT


def wait_status(sock: zmq.Socket[Any], timeout_s: float) -> tuple[LearnerStatus | None, str]:
    """The first well-formed :class:`LearnerStatus` on ``sock`` within ``timeout_s``.

    Returns ``(status, "")``, or ``(None, why)`` naming what went wrong (silence, or the last
    malformed message) so the health log says more than "unhealthy".
    """
    deadline = time.monotonic() + timeout_s
    why = "nothing arrived"
    while (remaining := deadline - time.monotonic()) > 0:
        if not sock.poll(remaining * 1000):
            break
        try:
            _, msg = transport.recv(sock, prefix_frames=1)
        except ProtocolError as exc:
            why = f"only malformed messages (last: {exc})"
            continue
        if isinstance(msg, LearnerStatus):
            return msg, ""
        why = f"only unexpected messages (last: {msg.TYPE})"
    return None, why


def describe(status: LearnerStatus) -> str:
    """One line for the health log."""
    state = "done" if status.done else "training"
    return (
        f"learner {status.learner_run_id} {state}: policy version {status.policy_version}, "
        f"{status.updates:,} updates, {status.env_frames:,}/{status.total_env_frames:,} env "
        f"frames, {status.env_fps:,.0f} env frames/s, unrolls accepted {status.accepted:,}"
    )


def check(sock: zmq.Socket[Any], endpoint: str, timeout_s: float) -> int:
    """One health check: print a verdict line and return the exit status."""
    status, why = wait_status(sock, timeout_s)
    if status is None:
        print(
            f"unhealthy: no learner status from {endpoint} within {timeout_s:g} s ({why}); "
            "is the learner running and is its broadcast port reachable?",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    print(f"healthy: {describe(status)} (from {endpoint})")
    return EXIT_HEALTHY


def follow(
    sock: zmq.Socket[Any], endpoint: str, timeout_s: float, interval_s: float, as_json: bool
) -> int:
    """Monitor mode: print progress until the learner is done (0) or silent (1)."""
    from launcher import progress_line  # heavy import (torch), paid once by the monitor

    last_print = float("-inf")
    while True:
        status, why = wait_status(sock, timeout_s)
        if status is None:
            print(
                f"learner silent: no status from {endpoint} for {timeout_s:g} s ({why})",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_UNHEALTHY
        now = time.monotonic()
        if as_json:
            print(json.dumps(dataclasses.asdict(status)), flush=True)
        elif status.done or now - last_print >= interval_s:
            last_print = now
            print(progress_line(status), flush=True)
        if status.done:
            print(f"done: {describe(status)}", flush=True)
            return EXIT_HEALTHY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.healthcheck",
        description="Exit 0 if the learner broadcasts a status within the timeout, else 1.",
    )
    parser.add_argument(
        "--endpoint",
        default=None,
        metavar="tcp://HOST:PORT",
        help="the learner's broadcast endpoint [default: from MARIO_BROADCAST, "
        "MARIO_NETWORK__BROADCAST_ENDPOINT, MARIO_LEARNER port + 1, or "
        f"{DEFAULT_ENDPOINT}]",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a status (the learner sends one a second) [default: %(default)s]",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep printing progress until the learner is done (a stand-in monitor)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="with --follow: seconds between progress lines [default: %(default)s]",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --follow: print every status as a JSON object"
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout: must be > 0")
    try:
        endpoint = resolve_endpoint(args.endpoint, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    ctx = zmq.Context()
    try:
        sock = transport.connect_sub(ctx, endpoint, (transport.TOPIC_STATUS,))
    except zmq.ZMQError as exc:
        ctx.term()
        print(f"unhealthy: cannot connect to {endpoint!r}: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    try:
        if args.follow:
            return follow(sock, endpoint, args.timeout, args.interval, args.json)
        return check(sock, endpoint, args.timeout)
    except KeyboardInterrupt:
        return EXIT_HEALTHY if args.follow else EXIT_UNHEALTHY
    finally:
        sock.close(0)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
