"""Soak test: train on the real ROM while killing a random actor at a fixed interval.

Run: ``uv run python -m bench.soak --minutes 10 --kill-every 30 [--actors 2]
[--kill-learner-at 0.5]``. Starts ``launcher.py`` with the smoke config (a frame budget it
will not reach), SIGKILLs a random actor every ``--kill-every`` seconds and the learner once at
``--kill-learner-at`` of the run (0 = never; the launcher restarts it from its checkpoint),
stops the run cleanly at the end, and prints one JSON line from the final learner's counters:
``updates``, ``actors_restarted``, ``learner_restarts``, ``sent``, ``accepted``, ``rejected``
(every rejected message), ``rejected_unrolls`` (the rejected unrolls among them),
``dropped_stale``, ``duplicates``, ``lost`` (unroll sequence numbers never received; must be
0), ``learner_rss_start_mb`` (one minute after the final learner started),
``learner_rss_end_mb`` and their ratio ``learner_rss_ratio``. ``sent`` counts unrolls as the
final learner saw them numbered by each actor incarnation (counters start afresh with each
learner incarnation), so ``sent == accepted + rejected_unrolls + dropped_stale + lost``
(``duplicates`` repeat a number already in ``sent``; honest actors send none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from protocol import transport
from protocol.messages import Heartbeat
from protocol.transport import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=30.0, help="seconds between kills")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument(
        "--kill-learner-at",
        type=float,
        default=0.5,
        help="SIGKILL the learner once at this fraction of the run; 0 = never",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    traj, broadcast = f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
         "--run.total_env_frames", "1_000_000_000", "--run.num_actors", str(args.actors),
         "--run.max_restarts", "1000", "--run-dir", str(run_dir),
         "--network.trajectory_endpoint", traj, "--network.broadcast_endpoint", broadcast],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sub = transport.connect_sub(
        zmq.Context.instance(), broadcast, (transport.TOPIC_HEARTBEAT, transport.TOPIC_STATUS)
    )
    beats: dict[str, Heartbeat] = {}
    pids: dict[str, set[int]] = {}
    rss_start: float | None = None
    learner_since: dict[int, float] = {}  # learner pid -> when its first heartbeat came
    learner_killed = False
    start = time.monotonic()
    next_kill = start + args.kill_every
    kills = 0
    try:
        while time.monotonic() - start < args.minutes * 60:
            if not sub.poll(200):
                continue
            _, msg = transport.recv(sub, prefix_frames=1)
            now = time.monotonic()
            if isinstance(msg, Heartbeat):
                beats[msg.key] = msg
                if msg.role == "actor":
                    pids.setdefault(msg.key, set()).add(msg.pid)
                if msg.key == "learner:0":
                    if msg.pid not in learner_since:
                        learner_since[msg.pid] = now
                        rss_start = None  # a new incarnation: its own baseline
                    if rss_start is None and now - learner_since[msg.pid] >= 60:
                        rss_start = msg.rss_mb
            kill_at = start + args.kill_learner_at * args.minutes * 60
            due = args.kill_learner_at > 0 and not learner_killed and now >= kill_at
            if due and "learner:0" in beats:
                learner_killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(beats["learner:0"].pid, signal.SIGKILL)
            alive = [b for k, b in beats.items() if b.role == "actor" and b.state == "alive"]
            if time.monotonic() >= next_kill and alive:
                victim = rng.choice(alive)
                try:
                    os.kill(victim.pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
                next_kill = time.monotonic() + args.kill_every
        rss_end = beats["learner:0"].rss_mb if "learner:0" in beats else None
    finally:
        sub.close(0)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=180)
    learner_beats = [
        json.loads(line)
        for line in (run_dir / "heartbeats.jsonl").read_text().splitlines()
        if '"role": "learner"' in line
    ]
    counters = learner_beats[-1]["counters"]
    statuses = [
        json.loads(line)
        for line in (run_dir / "heartbeats.jsonl").read_text().splitlines()
        if '"type": "learner_status"' in line
    ]
    result = {
        "updates": statuses[-1]["updates"] if statuses else 0,
        "actors_restarted": sum(len(p) - 1 for p in pids.values()),
        "learner_restarts": max(0, len(learner_since) - 1),
        "kills": kills,
        "sent": int(counters["sent"]),
        "accepted": int(counters["accepted"]),
        "rejected": int(counters["rejected"]),
        "rejected_unrolls": int(counters["rejected_unrolls"]),
        "dropped_stale": int(counters["dropped_stale"]),
        "duplicates": int(counters["duplicates"]),
        "lost": int(counters["lost"]),
        "learner_rss_start_mb": None if rss_start is None else round(rss_start, 1),
        "learner_rss_end_mb": None if rss_end is None else round(rss_end, 1),
        "learner_rss_ratio": (
            None if rss_start is None or rss_end is None else round(rss_end / rss_start, 3)
        ),
        "minutes": args.minutes,
        "launcher_exit": proc.returncode,
        "run_dir": str(run_dir),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
