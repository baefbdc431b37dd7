"""Scaling: aggregate env frames/s of one learner fed by N local actor processes.

Run: ``uv run python -m bench.scaling --actors 1,2,4 [--seconds 60] [--warmup 10] [--config C]
[--num-envs K] [-- LEARNER FLAGS...]``. Flags after ``--`` go to the learner as they are (e.g.
``-- --learner.batch_size 4 --learner.num_threads 1``).

For each N (in increasing order) it starts the real processes, a fresh ``python -m learner``
(with a budget it cannot reach, on free loopback ports, in a temporary run directory) and N
``python -m actor``, waits until every actor has logged that it joined, lets ``--warmup``
seconds pass so start-up is excluded, then reads the learner's ``LearnerStatus`` broadcasts for
``--seconds``. It prints one JSON line per N:

- ``actors``: N.
- ``env_fps``: env frames (NES frames) consumed by the learner per second over the measured
  window, the difference of ``LearnerStatus.env_frames`` over the receive times of the first and
  last status in it. Credits bound what is in flight, so in a steady state this is also the rate
  at which the actors produce.
- ``per_actor_fps``: ``env_fps / N``.
- ``updates_per_s``: learner updates per second over the same window.
- ``scaling_ratio``: ``env_fps / (N * baseline per-actor env_fps)``, the baseline being the
  single-actor run (``baseline_actors`` = 1), or the smallest N measured when 1 is not asked for.
  1.0 is perfect scaling; on a machine with fewer cores than N + 1 the actors and the learner
  share cores and the ratio drops accordingly (``cpu_count`` says how many there were).
- ``seconds``, ``env_frames``, ``updates``: the measured window; ``device``: the learner's, from
  its log; ``config``: the preset.

Run by: a person on one machine (``cpu_count`` matters). Owns nothing but its child processes,
which it stops with SIGTERM (then SIGKILL) whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zmq

from protocol import transport
from protocol.messages import LearnerStatus, ProtocolError
from protocol.transport import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE_BUDGET = "1_000_000_000_000"  # env frames: the learner never stops by itself here
_DEVICE = re.compile(r"learner \S+ on (\S+?):")


class BenchError(RuntimeError):
    """A process failed or did not start in time; the message says which and where its log is."""


@dataclass
class Proc:
    """A child process whose output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        rc = self.popen.poll()
        if rc is not None:
            tail = "\n".join(self.text().splitlines()[-15:])
            raise BenchError(f"{self.name} exited with status {rc}; {self.log_path}:\n{tail}")


def _start(name: str, argv: list[str], log_dir: Path) -> Proc:
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - held for the child's life
    popen = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return Proc(name, popen, log_path, log_file)


def _stop(procs: list[Proc]) -> None:
    """SIGTERM everyone (actors first, so the learner is not left waiting), then reap."""
    for proc in reversed(procs):
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    for proc in reversed(procs):
        try:
            proc.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
        proc.log_file.close()


def _next_status(sub: zmq.Socket[Any], timeout_s: float) -> LearnerStatus | None:
    """The next status on ``sub`` within ``timeout_s`` (malformed messages are skipped)."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if not sub.poll(remaining * 1000):
            return None
        try:
            _, msg = transport.recv(sub, prefix_frames=1)
        except ProtocolError:
            continue
        if isinstance(msg, LearnerStatus):
            return msg
    return None


def measure(
    num_actors: int,
    *,
    config: Path,
    seconds: float,
    warmup: float,
    num_envs: int | None,
    learner_args: list[str],
    log_dir: Path,
    startup_timeout: float = 300.0,
) -> dict[str, Any]:
    """One learner and ``num_actors`` actors: the figures of the measured window (no ratio)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    unrolls = f"tcp://127.0.0.1:{free_tcp_port()}"
    broadcast = f"tcp://127.0.0.1:{free_tcp_port()}"
    ctx = zmq.Context.instance()
    sub = transport.connect_sub(ctx, broadcast, (transport.TOPIC_STATUS,))
    procs: list[Proc] = []
    try:
        learner_argv = [
            sys.executable, "-m", "learner", "--config", str(config),
            "--run-dir", str(log_dir / "run"),
            "--run.total_env_frames", UNREACHABLE_BUDGET,
            "--network.trajectory_endpoint", unrolls,
            "--network.broadcast_endpoint", broadcast,
            *learner_args,
        ]  # fmt: skip
        procs.append(_start("learner", learner_argv, log_dir))
        for i in range(num_actors):
            argv = [sys.executable, "-m", "actor", "--learner", unrolls, "--actor-id", str(i)]
            if num_envs:
                argv += ["--num-envs", str(num_envs)]
            procs.append(_start(f"actor-{i}", argv, log_dir))

        # Start-up (imports, env construction, joining) is excluded: wait for every join.
        deadline = time.monotonic() + startup_timeout
        while not all("joined learner" in p.text() for p in procs[1:]):
            for proc in procs:
                proc.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"actors did not all join within {startup_timeout:g} s")
            _next_status(sub, 0.5)
        warm_until = time.monotonic() + warmup
        while time.monotonic() < warm_until:
            _next_status(sub, warm_until - time.monotonic())

        first = _next_status(sub, 30)
        if first is None:
            raise BenchError("no status from the learner for 30 s")
        t0 = time.monotonic()
        last, t1 = first, t0
        while t1 - t0 < seconds:
            for proc in procs:
                proc.check_alive()
            status = _next_status(sub, 30)
            if status is None:
                raise BenchError("no status from the learner for 30 s")
            last, t1 = status, time.monotonic()
        device = _DEVICE.search(procs[0].text())
    finally:
        sub.close(0)
        _stop(procs)
    elapsed = t1 - t0
    frames = last.env_frames - first.env_frames
    updates = last.updates - first.updates
    return {
        "actors": num_actors,
        "env_fps": round(frames / elapsed, 1),
        "per_actor_fps": round(frames / elapsed / num_actors, 1),
        "updates_per_s": round(updates / elapsed, 3),
        "seconds": round(elapsed, 2),
        "env_frames": frames,
        "updates": updates,
        "device": device.group(1) if device else "unknown",
        "config": str(config),
        "cpu_count": os.cpu_count(),
    }


def parse_counts(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (sorted, unique, each >= 1)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"actor counts must be >= 1, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    learner_args: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, learner_args = args_in[:cut], args_in[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--actors", type=parse_counts, default=[1, 2], help="e.g. 1,2,4")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per N")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds after every actor joined, unmeasured"
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "mario-1-1.toml")
    parser.add_argument("--num-envs", type=int, default=None, help="envs per actor")
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep run directories and logs here"
    )
    args = parser.parse_args(args_in)
    root = args.logs or Path(tempfile.mkdtemp(prefix="mario-scaling-"))
    baseline: tuple[int, float] | None = None  # (N, per-actor env fps)
    try:
        for n in args.actors:
            result = measure(
                n,
                config=args.config,
                seconds=args.seconds,
                warmup=args.warmup,
                num_envs=args.num_envs,
                learner_args=learner_args,
                log_dir=root / f"actors-{n}",
            )
            if baseline is None:
                baseline = (n, result["per_actor_fps"])
            base_n, base_fps = baseline
            result["scaling_ratio"] = (
                round(result["env_fps"] / (n * base_fps), 3) if base_fps else 0.0
            )
            result["baseline_actors"] = base_n
            print(json.dumps(result), flush=True)
    except BenchError as exc:
        print(f"bench.scaling: {exc} (logs kept in {root})", file=sys.stderr)
        return 1
    if args.logs is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
