"""``launcher.py dashboard [ENDPOINT]``: a live web page of a learner's fleet and learning curves.

Run by: an operator, on the learner's machine or any machine that reaches its broadcast port.
Owns the dashboard's subscription to the learner's broadcast (topics ``heartbeat`` and
``status``, as ``launcher.py monitor``), the state it keeps from it (:class:`FleetBoard`: the
newest heartbeat per process, the newest status, and one learning-curve point per status, with
the run's earlier points from ``RUN_DIR/metrics.jsonl`` when the run directory is known), and
the web app that serves it (Starlette on uvicorn, :func:`build_app`):

* ``GET /``: the page (``telemetry/dashboard_static/index.html``; charts drawn by uPlot 1.6.32,
  MIT, served from ``telemetry/dashboard_static/vendor/``, never from a CDN);
* ``GET /api/state``: the state as JSON (:meth:`FleetBoard.snapshot`);
* ``GET /events``: the same as server-sent events, one ``data:`` line per
  :data:`PUSH_INTERVAL_S` (the page's live updates);
* ``GET /video/latest``: the newest eval GIF of the run directory (``RUN_DIR/eval/videos``,
  written by the eval actor), 404 without one or without a known run directory.

Like the monitor it can start before, during or after a run, for a local or a remote learner
(ZeroMQ reconnects by itself). Without ENDPOINT it follows the newest run ``launcher.py``
started on this machine (:mod:`telemetry.registry`), whose run directory also gives the video.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from rich.console import Console

from configs import schema
from learner.metrics_log import METRICS_LOG
from protocol import transport
from protocol.messages import Heartbeat, LearnerStatus, ProtocolError, to_json
from telemetry.monitor import default_endpoint
from telemetry.registry import live_runs

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("dashboard_static")
#: Seconds between server-sent events (the learner broadcasts its status about once a second).
PUSH_INTERVAL_S = 1.0
#: Learning-curve points kept (one per status: ~2.7 h at one a second); older ones are thinned
#: to every other point, so a long run keeps its whole shape at half the resolution.
MAX_POINTS = 10_000
#: Seconds without any message after which the page says nothing answers.
SILENT_AFTER_S = 5.0
VIDEO_SUFFIXES = (".gif", ".mp4")

#: The curve series, in the order of :meth:`FleetBoard.snapshot`'s ``curves`` columns.
CURVE_FIELDS = ("env_frames", "mean_return", "mean_x_pos", "flag_rate", "env_fps")
#: The same series in ``RUN_DIR/metrics.jsonl`` (:mod:`learner.metrics_log`), for the history
#: before the dashboard started.
METRICS_FIELDS = ("env_frames", "avg_return", "x_pos_mean", "flag_rate", "env_frames_per_sec")


@dataclass
class FleetBoard:
    """What the dashboard knows, fed by :meth:`on_message` from the subscription thread.

    Thread-safe: one lock guards every field. ``curves`` holds one row per status whose
    ``env_frames`` moved (or the first), with :data:`CURVE_FIELDS` as columns.

    Args:
        endpoint: the broadcast endpoint listened to (shown on the page).
        run_dir: the run directory, for the eval video; None when unknown (a remote learner
            without ``--run-dir``).
    """

    endpoint: str
    run_dir: Path | None = None
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    curves: deque[tuple[float | None, ...]] = field(default_factory=deque)
    last_message: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_message(self, msg: Heartbeat | LearnerStatus, now: float | None = None) -> None:
        """Record one broadcast message (other message types are ignored)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.last_message = now
            if isinstance(msg, Heartbeat):
                self.peers[msg.key] = to_json(msg)
            elif isinstance(msg, LearnerStatus):
                if self.status is not None and msg.learner_run_id != self.status["learner_run_id"]:
                    # a new learner: a restart resumed from a checkpoint, or another run from 0.
                    # Either way the points past its frame count are not its history
                    while self.curves and (self.curves[-1][0] or 0) >= msg.env_frames:
                        self.curves.pop()
                self.status = to_json(msg)
                if not self.curves or msg.env_frames != self.curves[-1][0]:
                    self.curves.append(tuple(float(getattr(msg, f)) for f in CURVE_FIELDS))
                    if len(self.curves) > MAX_POINTS:
                        kept = list(self.curves)
                        self.curves = deque(kept[: MAX_POINTS // 2 : 2] + kept[MAX_POINTS // 2 :])

    def backfill(self) -> int:
        """Prepend the curve points of ``RUN_DIR/metrics.jsonl`` older than the first point
        heard (a dashboard started mid-run or after it shows the whole run); a torn last line
        and lines without the fields are skipped, nulls stay gaps. Returns the points added."""
        path = None if self.run_dir is None else self.run_dir / METRICS_LOG
        if path is None or not path.is_file():
            return 0
        points: list[tuple[float | None, ...]] = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                point = tuple(_number(record[f]) for f in METRICS_FIELDS)
            except (ValueError, KeyError, TypeError):
                continue
            if point[0] is not None and (not points or point[0] > (points[-1][0] or 0)):
                points.append(point)
        with self._lock:
            first = self.curves[0][0] if self.curves else None
            older = [p for p in points if first is None or (p[0] or 0) < first]
            self.curves.extendleft(reversed(older))
        return len(older)

    def latest_video(self) -> Path | None:
        """The newest eval video under ``RUN_DIR/eval/videos``, or None."""
        if self.run_dir is None:
            return None
        folder = self.run_dir / "eval" / "videos"
        videos = (
            [p for p in folder.glob("*") if p.suffix in VIDEO_SUFFIXES] if folder.is_dir() else []
        )
        return max(videos, key=lambda p: p.stat().st_mtime, default=None)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The state as JSON-ready data.

        Keys: ``endpoint``; ``silent_s`` (seconds since the last message, None before any);
        ``answering`` (a message within :data:`SILENT_AFTER_S`); ``peers`` (heartbeats as
        :func:`protocol.messages.to_json` gives them: learner, launcher, eval, then actors by
        id); ``status`` (the newest ``learner_status``, or None); ``curves`` (column name ->
        list of floats, :data:`CURVE_FIELDS`); ``video`` (the newest eval video's name, or
        None).
        """
        now = time.monotonic() if now is None else now
        order = {"learner": 0, "launcher": 1, "eval": 2, "actor": 3}
        with self._lock:
            peers = sorted(
                self.peers.values(),
                key=lambda p: (order.get(p["role"], 9), _numeric_id(p["id"]), p["id"]),
            )
            columns = list(zip(*self.curves)) if self.curves else [() for _ in CURVE_FIELDS]
            silent = None if self.last_message is None else now - self.last_message
            status = self.status
        video = self.latest_video()
        return {
            "endpoint": self.endpoint,
            "silent_s": silent,
            "answering": silent is not None and silent < SILENT_AFTER_S,
            "peers": peers,
            "status": status,
            "curves": {name: list(col) for name, col in zip(CURVE_FIELDS, columns)},
            "video": None if video is None else video.name,
        }


def _number(value: Any) -> float | None:
    """A finite JSON number as float; null (or anything else) as None, a gap in a curve."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _numeric_id(value: str) -> int:
    return int(value) if value.isdigit() else -1


class Subscription(threading.Thread):
    """Feeds a :class:`FleetBoard` from the learner's broadcast until :meth:`stop`.

    Malformed messages are logged and skipped; ZeroMQ reconnects to a restarted learner.
    """

    def __init__(self, board: FleetBoard, ctx: zmq.Context[Any] | None = None) -> None:
        super().__init__(name="dashboard-sub", daemon=True)
        self.board = board
        self._ctx = ctx or zmq.Context.instance()
        self._stop = threading.Event()

    def run(self) -> None:
        sub = transport.connect_sub(
            self._ctx, self.board.endpoint, (transport.TOPIC_HEARTBEAT, transport.TOPIC_STATUS)
        )
        try:
            while not self._stop.is_set():
                if not sub.poll(200):
                    continue
                try:
                    _, msg = transport.recv(sub, prefix_frames=1)
                except ProtocolError as exc:
                    log.warning("dashboard: ignoring a malformed message: %s", exc)
                    continue
                if isinstance(msg, Heartbeat | LearnerStatus):
                    self.board.on_message(msg)
        finally:
            sub.close(0)

    def stop(self) -> None:
        self._stop.set()


def build_app(board: FleetBoard, push_interval_s: float = PUSH_INTERVAL_S) -> Any:
    """The Starlette app serving ``board`` (routes in the module docstring)."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def index(_request: Any) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def state(_request: Any) -> Response:
        return JSONResponse(board.snapshot())

    async def events(request: Any) -> Response:
        async def stream() -> AsyncIterator[str]:
            while not await request.is_disconnected():
                yield f"data: {json.dumps(board.snapshot())}\n\n"
                await asyncio.sleep(push_interval_s)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def video(_request: Any) -> Response:
        path = board.latest_video()
        if path is None:
            return JSONResponse({"error": "no eval video (yet)"}, status_code=404)
        media = "image/gif" if path.suffix == ".gif" else "video/mp4"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/events", events),
            Route("/video/latest", video),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ]
    )


def _default_run_dir(endpoint: str) -> Path | None:
    """The run directory registered for ``endpoint`` on this machine, if any."""
    for run in live_runs():
        if run["broadcast_endpoint"] == endpoint:
            return Path(run["run_dir"])
    return None


def main(argv: list[str]) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="launcher.py dashboard", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "endpoint",
        nargs="?",
        default=None,
        help="the learner's broadcast endpoint, e.g. tcp://10.0.0.5:5556 [default: the newest "
        "local run, else the default config's]",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve the page on")
    parser.add_argument("--port", type=int, default=8765, help="port to serve the page on")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="the run directory, for the latest eval video [default: the local run's]",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: must be in 0-65535, got {args.port}")
    endpoint, origin = (args.endpoint, "the command line") if args.endpoint else default_endpoint()
    try:
        schema.check_endpoint("endpoint", endpoint)
    except schema.ConfigError as exc:
        parser.error(str(exc))
    board = FleetBoard(endpoint, args.run_dir or _default_run_dir(endpoint))
    board.backfill()
    subscription = Subscription(board)
    subscription.start()
    # open event streams never end by themselves: give them 2 s on Ctrl+C, then close them
    config = uvicorn.Config(
        build_app(board), host=args.host, port=args.port, log_level="warning",
        timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    video = f"; eval videos from {board.run_dir}" if board.run_dir else ""
    Console(stderr=True).print(
        f"dashboard: http://{args.host}:{args.port}/ listening to {endpoint} (from {origin})"
        f"{video}; Ctrl+C stops it",
        highlight=False,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl+C it shut down on: a clean stop
    finally:
        subscription.stop()
        subscription.join(timeout=2)
    return 0
