"""``launcher.py monitor [ENDPOINT]``: watch a learner's fleet live, or stream it as JSON lines.

Run by: an operator, on the learner's machine or any machine that reaches its broadcast port.
Owns the subscription to the heartbeat stream (topics ``heartbeat`` and ``status``) and its
presentation: a rich table with one row per process plus fleet totals, or ``--json`` lines
(one object per message, for ``jq``). It can start before, during or after the learner: ZeroMQ
reconnects by itself, and the monitor says clearly while nothing answers.

Without ENDPOINT it uses the newest run started by ``launcher.py`` on this machine
(:mod:`telemetry.registry`), else the default config's broadcast endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from configs import schema
from configs.cli import DEFAULT_CONFIG
from protocol import transport
from protocol.messages import Heartbeat, LearnerStatus, ProtocolError, to_json
from telemetry.registry import live_runs

STATE_STYLE = {"alive": "green", "stale": "yellow", "dead": "bold red"}


def default_endpoint() -> tuple[str, str]:
    """(endpoint, where it came from) for a monitor started without one."""
    runs = live_runs()
    if runs:
        return runs[0]["broadcast_endpoint"], f"the run in {runs[0]['run_dir']}"
    endpoint = schema.load(DEFAULT_CONFIG).network.broadcast_endpoint
    return endpoint.replace("*", "127.0.0.1"), "the default config"


def _gpu_text(hb: Heartbeat) -> str:
    if hb.gpu is None:
        return "-"
    parts = []
    for g in hb.gpu:
        util = "?" if g.utilization is None else f"{g.utilization:.0f}%"
        mem = "" if g.memory_used_mb is None else f" {g.memory_used_mb / 1024:.1f}G"
        parts.append(f"{util}{mem}")
    return ", ".join(parts) or "-"


def render(peers: dict[str, Heartbeat], status: LearnerStatus | None, endpoint: str) -> Group:
    """The live view: one row per process, then the fleet totals."""
    table = Table(title=f"fleet at {endpoint}", expand=False)
    for column in ("role", "id", "host", "state", "fps", "lag", "cpu %", "rss MB", "gpu",
                   "stall"):  # fmt: skip
        table.add_column(column, justify="right" if column not in ("role", "host") else "left")
    order = {"learner": 0, "launcher": 1, "eval": 2, "actor": 3}
    for hb in sorted(peers.values(), key=lambda h: (order.get(h.role, 9), h.id)):
        table.add_row(
            hb.role, hb.id, hb.host, Text(hb.state, style=STATE_STYLE.get(hb.state, "")),
            f"{hb.env_fps:,.0f}", "-" if hb.policy_lag is None else f"{hb.policy_lag:.1f}",
            f"{hb.cpu_percent:.0f}", f"{hb.rss_mb:,.0f}", _gpu_text(hb),
            Text("STALLED", style="bold red") if hb.stalled else "",
        )  # fmt: skip
    if status is None:
        totals = Text("waiting for the learner's status...", style="dim")
    else:
        lag = "-" if status.mean_policy_lag is None else f"{status.mean_policy_lag:.1f}"
        gpu = "-" if status.gpu_utilization is None else f"{status.gpu_utilization:.0f}%"
        totals = Text(
            f"actors alive {status.actors_alive}, stale {status.actors_stale}, dead "
            f"{status.actors_dead} | actor env fps {status.fleet_env_fps:,.0f} | learner "
            f"{status.env_fps:,.0f} fps, {status.updates:,} updates, version "
            f"{status.policy_version} | mean lag {lag} | GPU {gpu} | frames "
            f"{status.env_frames:,}/{status.total_env_frames:,}"
        )
    return Group(table, totals)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="launcher.py monitor", description=__doc__.split("\n")[0])
    parser.add_argument(
        "endpoint",
        nargs="?",
        default=None,
        help="the learner's broadcast endpoint, e.g. tcp://10.0.0.5:5556",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="exit 1 if nothing arrives for this many seconds [default: wait]",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds [default: until Ctrl+C]",
    )
    args = parser.parse_args(argv)
    endpoint, origin = (args.endpoint, "the command line") if args.endpoint else default_endpoint()
    err = Console(stderr=True)
    err.print(f"monitor: listening to {endpoint} (from {origin})", highlight=False)
    ctx = zmq.Context.instance()
    sub = transport.connect_sub(ctx, endpoint, (transport.TOPIC_HEARTBEAT, transport.TOPIC_STATUS))
    peers: dict[str, Heartbeat] = {}
    status: LearnerStatus | None = None
    started = last_message = time.monotonic()
    warned = False
    live: Any = None
    if not args.json:
        live = Live(render(peers, status, endpoint), console=Console(), auto_refresh=False)
        live.start()
    try:
        while args.duration is None or time.monotonic() - started < args.duration:
            if not sub.poll(250):
                silent = time.monotonic() - last_message
                if silent > 5 and not warned:
                    err.print(f"monitor: nothing answers at {endpoint} yet; is the learner "
                              "running? (still waiting)", highlight=False)  # fmt: skip
                    warned = True
                if args.timeout is not None and silent > args.timeout:
                    err.print(f"monitor: nothing from {endpoint} for {silent:.0f} s; giving up",
                              highlight=False)  # fmt: skip
                    return 1
                continue
            try:
                _, msg = transport.recv(sub, prefix_frames=1)
            except ProtocolError as exc:
                err.print(f"monitor: ignoring a malformed message: {exc}", highlight=False)
                continue
            last_message = time.monotonic()
            if warned:
                err.print("monitor: the learner answers now", highlight=False)
                warned = False
            if isinstance(msg, Heartbeat):
                peers[msg.key] = msg
            elif isinstance(msg, LearnerStatus):
                status = msg
            if args.json:
                sys.stdout.write(json.dumps(to_json(msg)) + "\n")
                sys.stdout.flush()
            else:
                live.update(render(peers, status, endpoint), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
        sub.close(0)
    return 0
