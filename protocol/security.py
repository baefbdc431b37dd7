"""ZeroMQ CURVE: encryption and authentication of every socket, with an allow-list of actors.

Run by: every process. Owns the key layout made by ``launcher.py keys`` and how sockets are
secured:

- ``KEYS_DIR/learner.key`` (public) and ``learner.key_secret``: the learner's certificate;
  every client needs the public one to reach it.
- ``KEYS_DIR/clients/<name>.key`` / ``<name>.key_secret``: a client certificate per actor
  machine (``local`` for processes the launcher starts on the learner's machine).
- ``KEYS_DIR/authorized/<name>.key``: the public keys the learner accepts (its allow-list).

The learner's ROUTER and PUB are CURVE servers behind a ZAP authenticator that accepts only
allow-listed client keys, so a peer without such a key gets no connection at all: it delivers
nothing and learns nothing. Clients find their keys in ``MARIO_CURVE_CERT`` (their secret
certificate file) and ``MARIO_CURVE_SERVER`` (the learner's public certificate file); the
launcher sets both for the processes it starts. Certificates are written and read by pyzmq's
``zmq.auth`` (its ZPL certificate format).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

ENV_CERT = "MARIO_CURVE_CERT"
ENV_SERVER = "MARIO_CURVE_SERVER"
LOCAL_CLIENT = "local"


class CurveKeyError(RuntimeError):
    """A certificate is missing or unreadable; the message names the file and what to run."""


@dataclass(frozen=True)
class ClientKeys:
    """A client's key pair and the server's public key (Z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes


@dataclass(frozen=True)
class ServerKeys:
    """The learner's key pair and the directory of allow-listed client public keys."""

    public: bytes
    secret: bytes
    authorized_dir: Path


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise CurveKeyError(f"CURVE certificate not found: {path} (create keys with "
                        "`uv run launcher.py keys`)")  # fmt: skip
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except Exception as exc:
        raise CurveKeyError(f"CURVE certificate {path} is unreadable: {exc}") from exc
    if secret and not secret_key:
        raise CurveKeyError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret_key


def client_keys_from_env(environ: Mapping[str, str] = os.environ) -> ClientKeys | None:
    """Client keys named by ``MARIO_CURVE_CERT`` and ``MARIO_CURVE_SERVER``; None if unset.

    Raises:
        CurveKeyError: only one of the two is set, or a file is missing or unreadable.
    """
    cert, server = environ.get(ENV_CERT), environ.get(ENV_SERVER)
    if not cert and not server:
        return None
    if not (cert and server):
        raise CurveKeyError(f"CURVE needs both {ENV_CERT} and {ENV_SERVER}")
    public, secret = _load(Path(cert), secret=True)
    server_public, _ = _load(Path(server), secret=False)
    assert secret is not None
    return ClientKeys(public, secret, server_public)


def server_keys(keys_dir: Path) -> ServerKeys:
    """The learner's keys from ``keys_dir``.

    Raises:
        CurveKeyError: the learner certificate or the allow-list directory is missing.
    """
    public, secret = _load(keys_dir / "learner.key_secret", secret=True)
    authorized = keys_dir / "authorized"
    if not authorized.is_dir():
        raise CurveKeyError(f"CURVE allow-list directory not found: {authorized}")
    assert secret is not None
    return ServerKeys(public, secret, authorized)


def client_env(keys_dir: Path, name: str = LOCAL_CLIENT) -> dict[str, str]:
    """Environment variables that make a child process a CURVE client with ``name``'s keys."""
    return {
        ENV_CERT: str(keys_dir / "clients" / f"{name}.key_secret"),
        ENV_SERVER: str(keys_dir / "learner.key"),
    }


def start_authenticator(ctx: zmq.Context[Any], keys: ServerKeys) -> ThreadAuthenticator:
    """Start the ZAP handler that admits only allow-listed client keys (before any bind)."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.authorized_dir))
    return auth


def secure_server(sock: zmq.Socket[Any], keys: ServerKeys | None) -> None:
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_server = True


def secure_client(sock: zmq.Socket[Any], keys: ClientKeys | None) -> None:
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_serverkey = keys.server_public


def create_keys(keys_dir: Path, clients: list[str]) -> list[Path]:
    """Create the learner certificate (if missing) and one per client name (if missing), and
    allow-list every client. Returns the files written."""
    written: list[Path] = []
    for sub in ("clients", "authorized"):
        (keys_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (keys_dir / "learner.key_secret").is_file():
        written += [Path(p) for p in zmq.auth.create_certificates(keys_dir, "learner")]
    for name in clients:
        if not (keys_dir / "clients" / f"{name}.key_secret").is_file():
            written += [Path(p) for p in zmq.auth.create_certificates(keys_dir / "clients", name)]
        allowed = keys_dir / "authorized" / f"{name}.key"
        shutil.copyfile(keys_dir / "clients" / f"{name}.key", allowed)
        written.append(allowed)
    for path in written:
        if path.name.endswith("key_secret"):
            path.chmod(0o600)
    return written
