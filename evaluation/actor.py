"""The eval actor: evaluates the learner's latest weights every M updates during training.

Run by: ``python -m evaluation.actor --run-dir RUN_DIR`` (one process beside the learner and
the actors; the launcher starts it when ``eval.interval_updates > 0``).
Owns: its SUB socket to the learner's weight and status broadcasts, a CPU copy of the policy,
one env per evaluation stage, and the TensorBoard event files in ``RUN_DIR/eval/``.

It reads ``RUN_DIR/config.toml`` (the run's resolved config), subscribes to the learner's PUB
socket (``network.broadcast_endpoint``) and, whenever the newest weights it has heard are at
least ``eval.interval_updates`` policy versions past the ones it last evaluated (and on the first
weights it hears), plays ``eval.episodes`` episodes on each of ``eval.stages`` with the
``eval.policy`` policy (sampled or greedy). It never connects to the learner's unroll socket:
nothing it plays is sent or trained on, and it takes no credits.

Logged at step = the evaluated policy version, in ``RUN_DIR/eval/``:

* ``eval/clear_rate``, ``eval/progress``: means over the stages; ``eval/best_x_pos``: the
  largest ``x_pos`` of any episode; ``eval/seconds``: wall-clock time of the evaluation.
* per stage ``S``: ``eval/S/clear_rate``, ``eval/S/mean_x_pos``, ``eval/S/max_x_pos``,
  ``eval/S/progress``, ``eval/S/return``, ``eval/S/length``.
* ``eval/S/video`` (if ``eval.video``): the stage's first episode as an animated GIF image
  summary at 15 fps, half resolution (see :mod:`evaluation.video` for why not ``add_video``).
* ``RUN_DIR/eval/eval.jsonl``: one JSON line per evaluation with every stage's figures.
* ``RUN_DIR/eval/videos/S-vVERSION.gif``: the same GIF as a file, the newest
  :data:`KEEP_VIDEOS` per stage (the dashboard's latest video; the W&B mirror uploads each).

Started by hand with ``eval.interval_updates = 0`` (the launcher then starts none) it evaluates
every new policy version it hears, as fast as it can.

Exit status: 0 when stopped (SIGTERM/SIGINT, also mid-episode) or when the learner announces
the end of the run; ``ExitStatus.LEARNER_LOST`` (3) after ``actor.learner_timeout_s`` seconds of
silence from the learner (time spent evaluating does not count); 2 for a missing or invalid
config.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gymnasium
import zmq

from configs import schema
from evaluation.baselines import AgentPolicy
from evaluation.evaluate import (
    EpisodeResult,
    EvaluationStopped,
    build_model_for,
    default_stages,
    episode_seed,
    make_stage_env,
    run_episode,
    summarize,
)
from evaluation.video import EpisodeRecorder, FrameRelay, GifRecorder, add_gif_summary
from models.weights import WeightsMismatch, load_flat_state
from protocol import transport
from protocol.exit_status import ExitStatus
from protocol.messages import LearnerStatus, ProtocolError, Weights

log = logging.getLogger("eval_actor")

EXIT_BAD_CONFIG = 2
"""Exit status for a missing or invalid ``RUN_DIR/config.toml``."""

KEEP_VIDEOS = 5
"""Newest eval GIFs kept per stage in ``RUN_DIR/eval/videos`` (each a few hundred KB)."""


def local_endpoint(endpoint: str) -> str:
    """Where to connect for an endpoint the learner binds (a TCP wildcard -> loopback)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "tcp" and parts.hostname in ("*", "0.0.0.0", "::", None):
        return f"tcp://127.0.0.1:{parts.port}"
    return endpoint


@dataclass
class StageEnv:
    """One evaluation stage's env, kept across evaluations, and its switchable frame hook."""

    env: gymnasium.Env
    relay: FrameRelay


class EvalActor:
    """Periodic evaluation of broadcast weights. Construct, then :meth:`run`.

    Args:
        run_dir: the run directory (``config.toml`` is read, ``eval/`` written).
        broadcast: the learner's PUB endpoint to subscribe to; default: the config's
            ``network.broadcast_endpoint`` (wildcard hosts mapped to loopback).

    Raises:
        configs.schema.ConfigError: ``config.toml`` is missing or invalid.
    """

    def __init__(self, run_dir: Path, broadcast: str | None = None) -> None:
        import torch
        from torch.utils.tensorboard import SummaryWriter

        torch.set_num_threads(1)  # one core, like an actor
        self.run_dir = run_dir
        self.config = schema.load(run_dir / "config.toml")
        self.interval = max(1, self.config.eval.interval_updates)
        self.stages = default_stages(self.config)
        self.model = build_model_for(self.config).eval()
        self.endpoint = broadcast or local_endpoint(self.config.network.broadcast_endpoint)
        self.ctx = zmq.Context.instance()
        self.sub = transport.connect_sub(
            self.ctx, self.endpoint, (transport.TOPIC_WEIGHTS, transport.TOPIC_STATUS)
        )
        self.out_dir = run_dir / "eval"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.out_dir))
        self.stopping = False
        self.done = False
        self.last_heard = time.monotonic()
        self.latest: Weights | None = None
        self.evaluated_version: int | None = None
        self.evaluations = 0
        self._envs: dict[str, StageEnv] = {}

    # -- listening -------------------------------------------------------------------------
    def _drain(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for broadcasts, then take every queued one."""
        if not self.sub.poll(timeout_ms):
            return
        while True:
            try:
                _, msg = transport.recv(self.sub, prefix_frames=1, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            except ProtocolError as exc:
                log.warning("ignoring malformed broadcast: %s", exc)
                continue
            self.last_heard = time.monotonic()
            if isinstance(msg, Weights):
                if self.latest is None or msg.policy_version >= self.latest.policy_version:
                    self.latest = msg
            elif isinstance(msg, LearnerStatus) and msg.done:
                self.done = True

    def _due(self) -> bool:
        if self.latest is None:
            return False
        if self.evaluated_version is None:
            return True
        return self.latest.policy_version >= self.evaluated_version + self.interval

    # -- evaluating ------------------------------------------------------------------------
    def _stage_env(self, stage: str) -> StageEnv:
        if stage not in self._envs:
            relay = FrameRelay()
            env = make_stage_env(
                self.config.env,
                stage,
                max_episode_steps=self.config.eval.max_episode_steps,
                frame_hook=relay if self.config.env.is_mario else None,
            )
            self._envs[stage] = StageEnv(env, relay)
        return self._envs[stage]

    def evaluate(self, weights: Weights) -> list[EpisodeResult]:
        """Load ``weights`` and play every eval stage; logs and returns the episodes.

        Raises:
            EvaluationStopped: a stop was requested meanwhile.
            ProtocolError: the weights do not fit the model.
        """
        try:
            load_flat_state(self.model, weights.layout, weights.flat)
        except WeightsMismatch as exc:
            raise ProtocolError(exc.field, exc.reason, exc.detail) from exc
        version = weights.policy_version
        greedy = self.config.eval.policy == "greedy"
        start = time.monotonic()
        results: list[EpisodeResult] = []
        videos: dict[str, GifRecorder] = {}
        for stage in self.stages:
            stage_env = self._stage_env(stage)
            for episode in range(self.config.eval.episodes):
                seed = episode_seed(self.config.run.seed + version, stage, episode)
                recorder = None
                if episode == 0 and self.config.eval.video and self.config.env.is_mario:
                    videos[stage] = GifRecorder()
                    recorder = EpisodeRecorder([videos[stage]])
                    stage_env.relay.target = recorder.on_frame
                try:
                    outcome = run_episode(
                        stage_env.env,
                        AgentPolicy(self.model, greedy, seed),
                        seed=seed,
                        recorder=recorder,
                        should_stop=lambda: self.stopping,
                    )
                finally:
                    stage_env.relay.target = None
                results.append(EpisodeResult.of("agent", stage, episode, outcome))
        self._log(version, results, videos, time.monotonic() - start)
        return results

    def _log(
        self,
        version: int,
        results: list[EpisodeResult],
        videos: dict[str, GifRecorder],
        seconds: float,
    ) -> None:
        reports = summarize(results)
        w = self.writer
        for r in reports:
            w.add_scalar(f"eval/{r.stage}/clear_rate", r.clear_rate, version)
            w.add_scalar(f"eval/{r.stage}/mean_x_pos", r.mean_x_pos, version)
            w.add_scalar(f"eval/{r.stage}/max_x_pos", r.max_x_pos, version)
            w.add_scalar(f"eval/{r.stage}/progress", r.progress, version)
            w.add_scalar(f"eval/{r.stage}/return", r.mean_return, version)
            w.add_scalar(f"eval/{r.stage}/length", r.mean_length, version)
        clear = sum(r.clear_rate for r in reports) / len(reports)
        prog = sum(r.progress for r in reports) / len(reports)
        best = max(r.max_x_pos for r in reports)
        w.add_scalar("eval/clear_rate", clear, version)
        w.add_scalar("eval/progress", prog, version)
        w.add_scalar("eval/best_x_pos", best, version)
        w.add_scalar("eval/seconds", seconds, version)
        for stage, gif in videos.items():
            if gif.frames:
                add_gif_summary(w, f"eval/{stage}/video", gif, version)
                # for the dashboard's latest video and the learner's W&B mirror
                folder = self.out_dir / "videos"
                folder.mkdir(exist_ok=True)
                (folder / f"{stage}-v{version}.gif").write_bytes(gif.encode())
                kept = sorted(folder.glob(f"{stage}-v*.gif"), key=lambda p: p.stat().st_mtime)
                for old in kept[:-KEEP_VIDEOS]:
                    old.unlink(missing_ok=True)
        w.flush()
        line = {
            "policy_version": version,
            "seconds": seconds,
            "stages": {r.stage: r.metrics() for r in reports},
        }
        with (self.out_dir / "eval.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        log.info(
            "policy version %d: clear rate %.0f%%, progress %.1f%%, best x_pos %d on %d stage(s) "
            "in %.1f s",
            version,
            100 * clear,
            100 * prog,
            best,
            len(reports),
            seconds,
        )

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Listen and evaluate until stopped, the run ends, or the learner is lost.

        Returns:
            The exit status (module docstring).
        """
        timeout = self.config.actor.learner_timeout_s
        log.info(
            "eval actor: %s every %d updates, %d episode(s) x %d stage(s) (%s), listening on %s",
            self.config.eval.policy,
            self.interval,
            self.config.eval.episodes,
            len(self.stages),
            ",".join(self.stages),
            self.endpoint,
        )
        self.last_heard = time.monotonic()
        while not self.stopping and not self.done:
            self._drain(200)
            if self._due() and self.latest is not None:
                weights = self.latest
                try:
                    self.evaluate(weights)
                except EvaluationStopped:
                    break
                except ProtocolError as exc:
                    log.error("weights of version %d do not fit: %s", weights.policy_version, exc)
                self.evaluated_version = weights.policy_version
                self.evaluations += 1
                # Time spent playing is not the learner's silence.
                self.last_heard = time.monotonic()
                continue
            silent = time.monotonic() - self.last_heard
            if silent > timeout:
                log.error(
                    "nothing heard from the learner at %s for %.0f s (actor.learner_timeout_s "
                    "= %s); exiting",
                    self.endpoint,
                    silent,
                    timeout,
                )
                return int(ExitStatus.LEARNER_LOST)
        log.info("eval actor stopped after %d evaluation(s)", self.evaluations)
        return 0

    def close(self) -> None:
        """Close the envs, the TensorBoard writer (flushing it) and the socket."""
        for stage_env in self._envs.values():
            stage_env.env.close()
        self._envs.clear()
        self.writer.close()
        self.sub.close(0)


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.actor --run-dir RUN_DIR [--broadcast ENDPOINT]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.actor",
        description="Evaluate the learner's broadcast weights every eval.interval_updates "
        "updates; log to RUN_DIR/eval/.",
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="the run directory")
    parser.add_argument(
        "--broadcast",
        default=None,
        metavar="ENDPOINT",
        help="the learner's PUB endpoint [default: network.broadcast_endpoint of the config]",
    )
    args = parser.parse_args(argv)
    try:
        eval_actor = EvalActor(args.run_dir, args.broadcast)
    except (schema.ConfigError, ValueError) as exc:
        log.error("eval actor: %s", exc)
        return EXIT_BAD_CONFIG

    def _stop(signum: int, _frame: Any) -> None:
        eval_actor.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return eval_actor.run()
    finally:
        eval_actor.close()


if __name__ == "__main__":
    sys.exit(main())
