"""ZeroMQ socket factory: endpoints, high-water marks, size caps and topic framing.

Run by: every process. Owns how sockets are created and configured, so actor, learner and
launcher agree on patterns and limits:

- unrolls and hellos: actor DEALER --connect--> learner ROUTER (bind); the learner answers a
  hello with a welcome and the current weights on the same connection (no slow-joiner gap).
- weights, status and the heartbeat stream: learner PUB (bind) --> actor / launcher /
  monitor SUB, one topic frame first (``weights``, ``status``, ``heartbeat``).
- heartbeats: every process's heartbeat thread has its own DEALER to the learner ROUTER.

Client sockets take CURVE keys from the environment (:mod:`protocol.security`), so every
process started with them, actor, heartbeat thread, launcher, monitor or eval actor, is
secured the same way.

Bounded queues everywhere: the learner's credits (see :class:`protocol.messages.Credit`) cap
the unrolls each actor has in flight, HWMs back them up at the socket level, and the PUB's send
HWM drops old broadcasts for a slow subscriber instead of growing (a later weights message
supersedes it).
"""

from __future__ import annotations

import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import zmq

from protocol.codec import DEFAULT_LIMITS, decode, encode
from protocol.messages import Message
from protocol.security import ServerKeys, client_keys_from_env, secure_client, secure_server

log = logging.getLogger(__name__)

TOPIC_WEIGHTS = b"weights"
TOPIC_STATUS = b"status"
TOPIC_HEARTBEAT = b"heartbeat"


def _common(sock: zmq.Socket[Any], linger_ms: int) -> zmq.Socket[Any]:
    sock.setsockopt(zmq.LINGER, linger_ms)
    # ZeroMQ drops larger frames (and the connection) without a trace, so its cap sits above
    # the codec's: frames between the two arrive and are counted as rejected (too_large)
    sock.setsockopt(zmq.MAXMSGSIZE, 2 * DEFAULT_LIMITS.max_frame_bytes)
    return sock


def bind_router(
    ctx: zmq.Context[Any], endpoint: str, rcvhwm: int = 64, curve: ServerKeys | None = None
) -> zmq.Socket[Any]:
    """Learner side of the unroll channel. ``rcvhwm`` caps messages buffered per peer;
    ``curve`` makes it a CURVE server (start the authenticator first)."""
    sock = _common(ctx.socket(zmq.ROUTER), 0)
    secure_server(sock, curve)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.SNDHWM, 8)
    sock.bind(endpoint)
    return sock


def connect_dealer(ctx: zmq.Context[Any], endpoint: str, sndhwm: int = 64) -> zmq.Socket[Any]:
    """Actor side of the unroll channel.

    The learner's credits bound what an actor sends; ``sndhwm`` is only a backstop.

    Reconnects are ZeroMQ's job (backoff 100 ms up to 5 s), so a restarted learner at the same
    endpoint is found again without a new socket.
    """
    sock = _common(ctx.socket(zmq.DEALER), 1000)
    secure_client(sock, client_keys_from_env())
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, 8)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
    sock.connect(endpoint)
    return sock


def bind_pub(
    ctx: zmq.Context[Any], endpoint: str, sndhwm: int = 4, curve: ServerKeys | None = None
) -> zmq.Socket[Any]:
    """Learner's broadcast socket for weights, status and heartbeats."""
    sock = _common(ctx.socket(zmq.PUB), 0)
    secure_server(sock, curve)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.bind(endpoint)
    return sock


def connect_sub(ctx: zmq.Context[Any], endpoint: str, topics: tuple[bytes, ...]) -> zmq.Socket[Any]:
    """Subscriber to the learner's broadcasts, filtered to ``topics`` (filtered at the PUB)."""
    sock = _common(ctx.socket(zmq.SUB), 0)
    secure_client(sock, client_keys_from_env())
    sock.setsockopt(zmq.RCVHWM, 4)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def send(
    sock: zmq.Socket[Any], message: Message, *, prefix: list[bytes] | None = None, flags: int = 0
) -> None:
    """Encode and send ``message``, after ``prefix`` frames (a topic or a ROUTER identity)."""
    sock.send_multipart([*(prefix or []), *encode(message)], flags=flags, copy=False)


def recv(
    sock: zmq.Socket[Any], *, prefix_frames: int = 0, flags: int = 0
) -> tuple[list[bytes], Message]:
    """Receive one message; returns ``(prefix frames, decoded message)``.

    Raises:
        protocol.messages.ProtocolError: the message is malformed (it has been consumed).
        zmq.Again: with ``zmq.NOBLOCK`` in ``flags`` and nothing queued.
    """
    frames = sock.recv_multipart(flags=flags, copy=False)
    prefix = [bytes(f.buffer) for f in frames[:prefix_frames]]
    return prefix, decode(frames[prefix_frames:])


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (tests and benchmarks that
    start their own learner use it so they never collide with a running one)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def resolve_broadcast(learner_endpoint: str, broadcast_endpoint: str) -> str:
    """Where an actor should subscribe, given the endpoint it reached the learner at.

    For TCP the learner may bind a wildcard (``tcp://*:5556``); the host the actor used for the
    unroll channel is the one that reaches the learner, so it keeps that host and takes the
    broadcast port. Other transports (``ipc://``, ``inproc://``) are used as given.
    """
    learner, broadcast = urlsplit(learner_endpoint), urlsplit(broadcast_endpoint)
    if learner.scheme != "tcp" or broadcast.scheme != "tcp":
        return broadcast_endpoint
    host = learner.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{broadcast.port}"
