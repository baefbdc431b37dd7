"""``python -m deploy.healthcheck [--actor]``: container health from the learner's broadcasts.

Run by: Docker's ``HEALTHCHECK`` in the learner and actor images and Kubernetes probes, inside
the container whose health is asked. Owns finding the learner's broadcast endpoint from the
container's environment and the verdict: exit 0 (healthy) or 1 (unhealthy), each with one line
saying which endpoint was asked and what came back (Docker keeps it in ``docker inspect``).

- Learner (default): healthy if a ``LearnerStatus`` (topic ``status``, about one a second)
  arrives within ``--timeout``. A subscriber only receives what is published after it connects,
  so any status is fresh: the learner's serving loop ran within the timeout. This will move to
  the learner's own heartbeat on the heartbeat stream (issue 4), which also says whether its
  stall watchdog fired.
- Actor (``--actor``): healthy if the learner republishes a heartbeat (topic ``heartbeat``) of
  an actor on this host (``--host``, default this container's host name, which is what the
  actor puts in its heartbeats) that it marks ``alive`` and that reports no stall. So the check
  says the actor is stepping and the learner hears it, not merely that the learner is up.

Where the endpoint comes from, first match wins:

1. ``--endpoint tcp://HOST:PORT``;
2. ``MARIO_BROADCAST`` (as for ``launcher.py --actors-only``);
3. ``MARIO_NETWORK__BROADCAST_ENDPOINT`` (the learner container's bound endpoint; a wildcard
   host such as ``*`` means this machine, so it asks 127.0.0.1);
4. ``MARIO_LEARNER`` with its port + 1 (the launcher's convention for the broadcast port);
5. ``tcp://127.0.0.1:5556`` (the default config's).

With CURVE on, the check is a client like any other: ``MARIO_CURVE_CERT`` and
``MARIO_CURVE_SERVER`` in the container's environment secure its socket (docker-compose.curve.yml
sets them). For watching a run, use ``launcher.py monitor`` (the compose ``monitor`` service).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import zmq

from protocol import transport
from protocol.messages import Heartbeat, LearnerStatus, Message, ProtocolError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


def _loopback_if_wildcard(endpoint: str) -> str:
    """``tcp://*:5556`` -> ``tcp://127.0.0.1:5556``: a bound wildcard is reached locally.

    (The launcher's rule too; not imported from there because the launcher pulls in torch,
    which would make every health check seconds slower.)
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


def _messages(sock: zmq.Socket[Any], deadline: float) -> Any:
    """Yield well-formed messages from ``sock`` until ``deadline``; malformed ones are reported
    as ``ProtocolError`` values so the verdict can name them."""
    while (remaining := deadline - time.monotonic()) > 0:
        if not sock.poll(remaining * 1000):
            return
        try:
            yield transport.recv(sock, prefix_frames=1)[1]
        except ProtocolError as exc:
            yield exc


def learner_verdict(sock: zmq.Socket[Any], timeout_s: float) -> tuple[LearnerStatus | None, str]:
    """The first :class:`LearnerStatus` within ``timeout_s``, or ``(None, why not)``."""
    why = "no status arrived: is the learner running, and its broadcast port reachable?"
    for msg in _messages(sock, time.monotonic() + timeout_s):
        if isinstance(msg, LearnerStatus):
            return msg, ""
        why = _why(msg)
    return None, why


def actor_verdict(
    sock: zmq.Socket[Any], host: str, timeout_s: float
) -> tuple[Heartbeat | None, str]:
    """The first healthy heartbeat of an actor on ``host`` within ``timeout_s``, or
    ``(None, why not)`` naming the last thing seen (its state or stall, or the learner's
    silence)."""
    why = "nothing arrived: is the learner running, and its broadcast port reachable?"
    for msg in _messages(sock, time.monotonic() + timeout_s):
        if isinstance(msg, Heartbeat) and msg.role == "actor" and msg.host == host:
            if msg.state == "alive" and not msg.stalled:
                return msg, ""
            stall = f", stalled ({msg.stall_file})" if msg.stalled else ""
            why = f"actor {msg.id} on {host} is {msg.state}{stall}"
        elif isinstance(msg, LearnerStatus) and why.startswith("nothing"):
            why = f"the learner is up but relays no heartbeat from an actor on {host}"
        elif not isinstance(msg, Heartbeat | LearnerStatus):
            why = _why(msg)
    return None, why


def _why(msg: Message | ProtocolError) -> str:
    if isinstance(msg, ProtocolError):
        return f"only malformed messages (last: {msg})"
    return f"only unexpected messages (last: {msg.TYPE})"


def describe_status(status: LearnerStatus) -> str:
    state = "done" if status.done else "training"
    return (
        f"learner {status.learner_run_id} {state}: policy version {status.policy_version}, "
        f"{status.updates:,} updates, {status.env_frames:,}/{status.total_env_frames:,} env "
        f"frames, {status.env_fps:,.0f} env frames/s, unrolls accepted {status.accepted:,}"
    )


def describe_heartbeat(hb: Heartbeat) -> str:
    return (
        f"actor {hb.id} on {hb.host} alive: {hb.env_fps:,.0f} env frames/s, policy version "
        f"{hb.policy_version}, last progress {hb.progress_age_s:.1f} s ago"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.healthcheck",
        description="Exit 0 if the learner (or, with --actor, this host's actor) is alive, else 1.",
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
        help="seconds to wait for a status or heartbeat (about one a second) "
        "[default: %(default)s]",
    )
    parser.add_argument(
        "--actor",
        action="store_true",
        help="check this host's actor (its heartbeat as relayed by the learner), not the learner",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="with --actor: the host name in the actor's heartbeats [default: this host's]",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout: must be > 0")
    try:
        endpoint = resolve_endpoint(args.endpoint, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    # In actor mode status too: it tells "learner up, no actor here" from "learner down".
    topics = (
        (transport.TOPIC_HEARTBEAT, transport.TOPIC_STATUS)
        if args.actor
        else (transport.TOPIC_STATUS,)
    )
    ctx = zmq.Context()
    try:
        sock = transport.connect_sub(ctx, endpoint, topics)
    except (zmq.ZMQError, RuntimeError) as exc:  # RuntimeError: CURVE keys named but unusable
        ctx.destroy(linger=0)  # closes the half-made socket too, or term() would block
        print(f"unhealthy: cannot connect to {endpoint!r}: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    try:
        if args.actor:
            host = args.host or socket.gethostname()
            heartbeat, why = actor_verdict(sock, host, args.timeout)
            found = describe_heartbeat(heartbeat) if heartbeat else ""
        else:
            status, why = learner_verdict(sock, args.timeout)
            found = describe_status(status) if status else ""
    finally:
        sock.close(0)
        ctx.term()
    if not found:
        print(
            f"unhealthy: {why} (asked {endpoint} for {args.timeout:g} s)",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    print(f"healthy: {found} (from {endpoint})")
    return EXIT_HEALTHY


if __name__ == "__main__":
    sys.exit(main())
