"""What the learner reports: TensorBoard scalars, ``metrics.jsonl``, ``heartbeats.jsonl`` and
throughput rates.

Run by: the learner process. Owns the accumulation of per-update metrics between TensorBoard
flushes, the policy-lag figures, the env-frame rate behind the progress line, and the
heartbeat stream's on-disk copy (one JSON object per line, parseable with ``jq``).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, deque
from pathlib import Path
from typing import IO

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from learner.accounting import Accounting, EpisodeWindow
from learner.fleet import FleetTotals
from learner.metrics_log import MetricsLog
from learner.wandb_mirror import WandbMirror
from protocol.messages import Message, to_json

HEARTBEAT_LOG = "heartbeats.jsonl"


class Reporter:
    """Collects learner metrics and writes them out.

    Args:
        run_dir: where the TensorBoard event file, ``heartbeats.jsonl`` and ``metrics.jsonl``
            go.
        frames_per_step: env frames per agent step (the frame skip), for ``env_steps_per_sec``.
        mirror: a W&B mirror that gets every metrics line too, or None.
    """

    def __init__(
        self, run_dir: Path, frames_per_step: int = 1, mirror: WandbMirror | None = None
    ) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.metrics = MetricsLog(run_dir)
        self.mirror = mirror
        self.frames_per_step = frames_per_step
        self._stream: IO[str] = open(run_dir / HEARTBEAT_LOG, "a", buffering=1)  # noqa: SIM115
        self._sums: Counter[str] = Counter()
        self._count = 0
        self._lags: list[tuple[float, float]] = []  # (mean, max) policy lag per batch
        self._rate: deque[tuple[float, int, int]] = deque(maxlen=30)

    def record_update(self, metrics: dict[str, float], lag_mean: float, lag_max: float) -> None:
        """One learner update's metrics and the policy lag of its batch (in versions)."""
        self._sums.update(metrics)
        self._count += 1
        self._lags.append((lag_mean, lag_max))

    def rates(self, env_frames: int, updates: int) -> tuple[float, float]:
        """(env frames/s, updates/s) over the last ~30 calls (about 30 s at 1 call/s)."""
        now = time.monotonic()
        self._rate.append((now, env_frames, updates))
        t0, f0, u0 = self._rate[0]
        if now <= t0:
            return 0.0, 0.0
        return (env_frames - f0) / (now - t0), (updates - u0) / (now - t0)

    def stream(self, message: Message) -> None:
        """Append a heartbeat or status message to ``heartbeats.jsonl``."""
        record = to_json(message)
        record["time"] = time.time()
        self._stream.write(json.dumps(record) + "\n")

    def scalars(
        self,
        step: int,
        env_fps: float,
        updates: int,
        episodes: EpisodeWindow,
        accounting: Accounting,
        fleet: FleetTotals,
    ) -> None:
        """Write averaged update metrics and current totals at ``step`` (env frames) to
        TensorBoard, and the same figures as one ``metrics.jsonl`` line."""
        w = self.writer
        means = (
            {key: total / self._count for key, total in self._sums.items()} if self._count else {}
        )
        for key, value in means.items():
            w.add_scalar(key, value, step)
        returns = [s.episode_return for s in episodes.recent]
        percentiles = np.percentile(returns, (50, 90, 99)) if returns else (None,) * 3
        if episodes.recent:
            for q, value in zip((50, 90, 99), percentiles, strict=True):
                w.add_scalar(f"episode/return_p{q}", float(value), step)
            w.add_scalar("episode/return", episodes.mean("episode_return"), step)
            w.add_scalar("episode/length", episodes.mean("length"), step)
            w.add_scalar("episode/x_pos", episodes.mean("max_x_pos"), step)
            w.add_scalar("episode/x_pos_max", max(s.max_x_pos for s in episodes.recent), step)
            w.add_scalar("episode/flag_rate", episodes.mean("flag_get"), step)
            names = {n for s in episodes.recent for n in s.components}
            for name in sorted(names):
                total = sum(s.components.get(name, 0.0) for s in episodes.recent)
                w.add_scalar(f"reward_components/{name}", total / len(episodes.recent), step)
        for kind, recent, count in (
            ("restored", episodes.recent_restored, episodes.restored),
            ("greedy", episodes.recent_greedy, episodes.greedy),
        ):
            if recent:
                w.add_scalar(f"episode_{kind}/count", count, step)
                w.add_scalar(f"episode_{kind}/x_pos", episodes.mean("max_x_pos", recent), step)
                w.add_scalar(f"episode_{kind}/flag_rate", episodes.mean("flag_get", recent), step)
        if self._lags:
            w.add_scalar("policy_lag/mean", float(np.mean([m for m, _ in self._lags])), step)
            w.add_scalar("policy_lag/max", max(m for _, m in self._lags), step)
        w.add_scalar("throughput/env_fps", env_fps, step)
        w.add_scalar("throughput/updates", updates, step)
        w.add_scalar("unrolls/accepted", accounting.accepted, step)
        w.add_scalar("unrolls/rejected", accounting.rejected_total, step)
        w.add_scalar("unrolls/dropped_stale", accounting.dropped_stale, step)
        w.add_scalar("unrolls/duplicates", accounting.duplicates, step)
        w.add_scalar("fleet/env_fps", fleet.env_fps, step)
        w.add_scalar("fleet/actors_alive", fleet.actors_alive, step)
        w.add_scalar("fleet/actors_dead", fleet.actors_dead, step)
        if fleet.mean_policy_lag is not None:
            w.add_scalar("fleet/mean_policy_lag", fleet.mean_policy_lag, step)
        if fleet.gpu_utilization is not None:
            w.add_scalar("fleet/gpu_utilization", fleet.gpu_utilization, step)
        w.flush()
        lags = self._lags
        record = {
            "time": time.time(),
            "updates": int(updates),
            "env_frames": int(step),
            "env_frames_per_sec": float(env_fps),
            "env_steps_per_sec": float(env_fps) / self.frames_per_step,
            "loss_total": _finite(means.get("loss/total")),
            "loss_policy": _finite(means.get("loss/policy")),
            "loss_baseline": _finite(means.get("loss/baseline")),
            "loss_entropy": _finite(means.get("loss/entropy")),
            "policy_entropy": _finite(means.get("policy/entropy")),
            "grad_norm": _finite(means.get("optim/grad_norm")),
            "learning_rate": _finite(means.get("optim/lr")),
            "entropy_cost": _finite(means.get("optim/entropy_cost")),
            "skipped_updates": _finite(
                means.get("optim/skipped_nonfinite", 0.0) if means else None
            ),
            "policy_lag_mean": _finite(float(np.mean([m for m, _ in lags])) if lags else None),
            "policy_lag_max": _finite(max(m for _, m in lags) if lags else None),
            "episodes": int(episodes.episodes),
            "restored_episodes": int(episodes.restored),
            "greedy_episodes": int(episodes.greedy),
            "greedy_flag_rate": _finite(
                episodes.mean("flag_get", greedy) if (greedy := episodes.recent_greedy) else None
            ),
            "avg_return": _finite(episodes.mean("episode_return") if returns else None),
            "recent_return_p50": _finite(percentiles[0]),
            "recent_return_p90": _finite(percentiles[1]),
            "recent_return_p99": _finite(percentiles[2]),
            "x_pos_mean": _finite(episodes.mean("max_x_pos") if returns else None),
            "flag_rate": _finite(episodes.mean("flag_get") if returns else None),
            "replay_size": None if "replay/size" not in means else round(means["replay/size"]),
            "replay_fill_rate": _finite(means.get("replay/fill_rate")),
            "replay_avg_unique_ratio": _finite(means.get("replay/unique_fraction")),
            "unrolls_accepted": int(accounting.accepted),
            "unrolls_rejected": int(accounting.rejected_total),
            "unrolls_dropped_stale": int(accounting.dropped_stale),
            "unrolls_duplicates": int(accounting.duplicates),
            "unrolls_lost": int(accounting.lost),
            "actors_alive": int(fleet.actors_alive),
            "gpu_util_mean_window": _finite(fleet.gpu_utilization),
            "gpu_mem_used_mb": _finite(fleet.gpu_memory_used_mb),
        }  # fmt: skip
        self.metrics.write(record)
        if self.mirror is not None:
            self.mirror.log(record)
        self._sums.clear()
        self._count = 0
        self._lags.clear()

    def close(self) -> None:
        self.writer.close()
        self._stream.close()
        self.metrics.close()
        if self.mirror is not None:
            self.mirror.close()


def _finite(value: float | np.floating | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
