"""Learner throughput: env frames consumed per second, in process or over the real sockets.

Run: ``uv run python -m bench.learner_throughput --seconds 20 [--config C] [--batch-size B]
[--replay-ratio R] [--amp bf16] [--compile] [--grad-accumulation N] [--actors N
[--variants TORSO:AMP:COMPILE,...]]``.

In process (no ``--actors``): prints one JSON line with ``frames_per_s`` (fresh env frames
consumed: B_fresh * T * frame skip per update, which is what the actors must supply),
``updates_per_s``, ``device``, ``batch`` ([T+1, B, *obs_shape] of the observations trained on
per update) and ``replay`` (null, or the ratio, fresh/replayed unrolls per update and the
replay's size). Batches are synthetic unrolls of the run's layout (:mod:`bench.synthetic`) and go
through :meth:`Learner.step`, so the figure covers collation, host-to-device copy, the
forward/backward pass, V-trace and the optimiser step, and with replay also sampling,
reconstruction and pushing of unrolls and the priority updates, without the sockets.

Over sockets (``--actors N``): first the in-process figure as above, then a real
:class:`learner.server.LearnerServer` on two free loopback ports fed by N fake actor processes
(:mod:`bench.fake_actor`: hello, credits and synthetic unrolls over ZeroMQ, as fast as credits
allow), measured for ``--seconds`` after a warm-up (``--warmup`` seconds from the first update;
the replay starts filled to ``replay.min_size`` with synthetic unrolls, as in process). Its JSON
adds ``actors``, ``in_process_frames_per_s``, ``vs_in_process`` (sockets / in process, from the
unrounded figures), ``policy_lag_mean`` and ``policy_lag_max`` (versions, over the window's
updates), ``weights_per_s`` and ``weight_mb_per_s`` (broadcasts), ``gpu_utilization_mean``
(percent, NVML; null without it), ``prefetch`` and ``time_split``: the learner main thread's
share of the window spent ``wait`` (polling with nothing to train on), ``receive`` (decode,
validation, accounting), ``prepare`` (on the main thread, prefetch off), ``prepare_wait`` (for
the worker's batch), ``train``, ``publish`` and ``other``, plus ``prepare_worker`` (the prefetch
thread's busy share). ``--variants`` measures several torso / precision / compile variants in
turn in one process (one line each, with ``variant``), so a suite pays the start-up once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import fake_actor
from bench.synthetic import run_spec, synthetic_unrolls
from configs import schema
from configs.cli import DEFAULT_CONFIG
from envs.spec import num_actions, observation_spec
from learner.learner import Learner
from learner.server import LearnerServer
from protocol import transport
from telemetry.gpu import NvmlSampler


def measure(config: schema.Config, seconds: float, warmup_updates: int = 3) -> dict[str, Any]:
    """Run ``Learner.step`` on synthetic unrolls for ``seconds``; return the JSON figures
    (plus ``frames_per_s_exact``, unrounded, for ratios).

    With replay, the replay is first filled with synthetic unrolls up to ``replay.min_size``
    (at least the pool), so that every measured update samples.
    """
    obs_shape, obs_dtype = observation_spec(config.env)
    device = config.learner.resolved_device
    learner = Learner(config, obs_shape, num_actions(config.env), device, obs_dtype)
    spec = learner.spec
    b, n = config.learner.batch_size, learner.fresh_per_step
    pool = synthetic_unrolls(spec, 4 * b)
    groups = [pool[i * n : (i + 1) * n] for i in range(len(pool) // n)]
    if learner.replay is not None:
        # up to replay.min_size (the preset's 100, not just the pool), or no update samples
        filler = synthetic_unrolls(spec, max(0, config.replay.min_size - len(pool)), seed=99)
        for traj in [*pool, *filler]:
            learner.replay.push(traj)
    for i in range(warmup_updates):
        learner.step(groups[i % len(groups)], progress=0.0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.step(groups[updates % len(groups)], progress=0.5)
        updates += 1
    sync()
    elapsed = time.perf_counter() - start
    replay = None
    if learner.replay is not None:
        replay = {
            "ratio": config.replay.ratio,
            "fresh_per_update": n,
            "replayed_per_update": b - n,
            "size": len(learner.replay),
        }
    return {
        "frames_per_s": round(updates * learner.frames_per_update / elapsed, 1),
        "frames_per_s_exact": updates * learner.frames_per_update / elapsed,
        "updates_per_s": round(updates / elapsed, 3),
        "device": device,
        "batch": [spec.unroll_length + 1, b, *obs_shape],
        "replay": replay,
        "torso": config.model.torso,
        "core": config.model.core,
        "amp": config.learner.amp,
        "compile": config.learner.compile,
        "grad_accumulation": config.learner.grad_accumulation,
        "torch_threads": torch.get_num_threads(),
        "updates": updates,
        "seconds": round(elapsed, 2),
    }


_SPLIT = ("wait_s", "receive_s", "prepare_s", "prepare_wait_s", "train_s", "publish_s")


def _sockets_config(config: schema.Config) -> schema.Config:
    """``config`` on two fresh loopback ports, with a budget and checkpoints out of the way."""
    data = schema.to_dict(config)
    data["network"] = {
        **data.get("network", {}),
        "trajectory_endpoint": f"tcp://127.0.0.1:{transport.free_tcp_port()}",
        "broadcast_endpoint": f"tcp://127.0.0.1:{transport.free_tcp_port()}",
    }
    data["run"] = {**data.get("run", {}), "total_env_frames": 10**15,
                   "checkpoint_interval_s": 10**9}  # fmt: skip
    data["security"] = {**data.get("security", {}), "curve": False}
    return schema.from_dict(data)


def measure_sockets(
    config: schema.Config, seconds: float, actors: int, warmup_s: float = 5.0
) -> dict[str, Any]:
    """A :class:`LearnerServer` fed by ``actors`` fake actor processes; the JSON figures of
    the module docstring (without the in-process ones).

    Raises:
        RuntimeError: the learner thread died, or no update happened within the warm-up
            plus 120 s (the fake actors could not connect).
    """
    config = _sockets_config(config)
    spec = run_spec(config)
    spawn = multiprocessing.get_context("spawn")  # no forked torch or ZeroMQ state
    slack = 300.0
    procs = [
        spawn.Process(
            target=fake_actor.run,
            args=(schema.to_dict(config), spec, i, warmup_s + seconds + slack),
            daemon=True,
        )
        for i in range(actors)
    ]
    with tempfile.TemporaryDirectory(prefix="learner-bench-") as tmp:
        server = LearnerServer(config, Path(tmp))
        if server.learner.replay is not None:
            # as in process: filled to its minimum first, so every measured update samples
            for traj in synthetic_unrolls(spec, max(1, config.replay.min_size), seed=99):
                server.learner.replay.push(traj)
        lags: list[tuple[float, float]] = []
        record = server.reporter.record_update

        def record_with_lag(metrics: dict[str, float], lag_mean: float, lag_max: float) -> None:
            lags.append((lag_mean, lag_max))
            record(metrics, lag_mean, lag_max)

        server.reporter.record_update = record_with_lag  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                server.run()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=serve, name="learner", daemon=True)
        for proc in procs:
            proc.start()
        thread.start()
        try:
            deadline = time.monotonic() + warmup_s + 120.0
            warm_from = None
            while True:
                if errors or not thread.is_alive():
                    raise RuntimeError(f"the learner stopped during the warm-up: {errors}")
                if server.learner.updates > 0:
                    warm_from = warm_from or time.monotonic()
                    if time.monotonic() - warm_from >= warmup_s:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("no update within the warm-up: did the actors connect?")
                time.sleep(0.05)
            gpu = NvmlSampler()
            utils: list[float] = []
            t0, frames0, updates0 = time.perf_counter(), server.env_frames, server.learner.updates
            timing0 = dataclasses.replace(server.timing)
            worker0 = server._prefetch.prepare_s if server._prefetch is not None else 0.0
            lags0 = len(lags)
            while time.perf_counter() - t0 < seconds:
                time.sleep(0.5)
                for stats in gpu.sample() or []:
                    if stats.utilization is not None:
                        utils.append(stats.utilization)
            elapsed = time.perf_counter() - t0
            frames, updates = server.env_frames - frames0, server.learner.updates - updates0
            timing = server.timing
            worker = server._prefetch.prepare_s if server._prefetch is not None else 0.0
            window_lags = lags[lags0:]
        finally:
            server.stopping = True
            thread.join(timeout=60)
            server.close()
            for proc in procs:
                proc.terminate()
                proc.join(timeout=10)
    split = {
        key.removesuffix("_s"): (getattr(timing, key) - getattr(timing0, key)) / elapsed
        for key in _SPLIT
    }
    split["other"] = max(0.0, 1.0 - sum(split.values()))
    split["prepare_worker"] = (worker - worker0) / elapsed
    published = timing.weights_published - timing0.weights_published
    sent_bytes = timing.weight_bytes - timing0.weight_bytes
    return {
        "actors": actors,
        "frames_per_s": frames / elapsed,
        "updates_per_s": updates / elapsed,
        "policy_lag_mean": float(np.mean([m for m, _ in window_lags])) if window_lags else None,
        "policy_lag_max": max((m for _, m in window_lags), default=None),
        "weights_per_s": published / elapsed,
        "weight_mb_per_s": sent_bytes / elapsed / 1e6,
        "gpu_utilization_mean": float(np.mean(utils)) if utils else None,
        "prefetch": config.learner.prefetch,
        "time_split": {key: round(value, 4) for key, value in split.items()},
        "device": config.learner.resolved_device,
        "torso": config.model.torso,
        "amp": config.learner.amp,
        "compile": config.learner.compile,
        "batch_size": config.learner.batch_size,
        "replay_ratio": config.replay.ratio if config.replay.enabled else None,
        "torch_threads": torch.get_num_threads(),
        "updates": updates,
        "seconds": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--batch-size", type=int, default=None, help="override learner.batch_size")
    parser.add_argument("--torso", default=None, help="override model.torso")
    parser.add_argument("--device", default=None, help="override learner.device")
    parser.add_argument(
        "--replay-ratio",
        type=float,
        default=None,
        help="enable replay with this replay.ratio (fraction of each batch replayed)",
    )
    parser.add_argument("--amp", default=None, help="override learner.amp (off, bf16, fp16)")
    parser.add_argument("--compile", action="store_true", help="set learner.compile")
    parser.add_argument(
        "--grad-accumulation", type=int, default=None, help="override learner.grad_accumulation"
    )
    parser.add_argument(
        "--actors", type=int, default=None,
        help="also measure a real learner server fed by this many fake actor processes",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of warm-up before a socket window"
    )
    parser.add_argument("--no-prefetch", action="store_true", help="set learner.prefetch false")
    parser.add_argument(
        "--variants", default=None, metavar="TORSO:AMP:COMPILE,...",
        help="with --actors: measure each variant in turn in this one process (one JSON line "
        "each, with its 'variant'), e.g. nature:off:eager,impala:bf16:compile",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.actors is not None and args.actors < 1:
        parser.error(f"--actors: must be >= 1, got {args.actors}")
    variants: list[tuple[str, str, bool]] = [(args.torso, args.amp, args.compile)]
    if args.variants is not None:
        if args.actors is None:
            parser.error("--variants: needs --actors")
        try:
            variants = [_variant(text) for text in args.variants.split(",")]
        except ValueError as exc:
            parser.error(f"--variants: {exc}")
    base: dict[str, Any] = {}
    for key, value in (
        ("learner.batch_size", args.batch_size),
        ("learner.device", args.device),
        ("learner.grad_accumulation", args.grad_accumulation),
    ):
        if value is not None:
            base[key] = value
    if args.replay_ratio is not None:
        base["replay.enabled"] = True
        base["replay.ratio"] = args.replay_ratio
        base["replay.min_size"] = 0
    if args.no_prefetch:
        base["learner.prefetch"] = False
    for torso, amp, compiled in variants:
        overrides = dict(base)
        if torso is not None:
            overrides["model.torso"] = torso
        if amp is not None:
            overrides["learner.amp"] = amp
        if compiled:
            overrides["learner.compile"] = True
        try:
            config = schema.load(args.config, overrides)
        except schema.ConfigError as exc:
            parser.error(str(exc))
        line = _measure_line(config, args.seconds, args.actors, args.warmup)
        if args.variants is not None:
            line = {"variant": f"{torso}:{amp}:{'compile' if compiled else 'eager'}", **line}
        print(json.dumps(line), flush=True)  # a suite that stops this process keeps the lines


def _variant(text: str) -> tuple[str, str, bool]:
    parts = text.strip().split(":")
    if len(parts) != 3 or parts[2] not in ("eager", "compile"):
        raise ValueError(f"expected TORSO:AMP:eager or TORSO:AMP:compile, got {text!r}")
    return parts[0], parts[1], parts[2] == "compile"


def _measure_line(
    config: schema.Config, seconds: float, actors: int | None, warmup_s: float
) -> dict[str, Any]:
    """One JSON line: in process only without ``actors``, else over sockets beside it."""
    if config.learner.resolved_device == "cpu" and config.learner.num_threads:
        torch.set_num_threads(config.learner.num_threads)  # as the learner process does
    in_process = measure(config, seconds)
    exact = in_process.pop("frames_per_s_exact")
    if actors is None:
        return in_process
    sockets = measure_sockets(config, seconds, actors, warmup_s)
    out = {
        **sockets,
        "frames_per_s": round(sockets["frames_per_s"], 1),
        "updates_per_s": round(sockets["updates_per_s"], 3),
        "in_process_frames_per_s": in_process["frames_per_s"],
        "vs_in_process": round(sockets["frames_per_s"] / exact, 3),
    }
    for key in ("policy_lag_mean", "weights_per_s", "weight_mb_per_s", "gpu_utilization_mean"):
        if out[key] is not None:
            out[key] = round(out[key], 3)
    return out


if __name__ == "__main__":
    main()
