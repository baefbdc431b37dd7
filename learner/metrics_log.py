"""``RUN_DIR/metrics.jsonl``: the learner's figures as one JSON object per log interval.

Run by: the learner process (:class:`learner.reporting.Reporter` writes it every
``run.log_interval_s``). Owns: the field list (:data:`FIELDS`, name, JSON type, unit and
meaning, declared once; the README's table is checked against it) and the file.

A script or notebook reads it without a TensorBoard parser, e.g.
``jq -r '[.env_frames, .avg_return] | @tsv' RUN_DIR/metrics.jsonl``. Every line has every
field; a figure that does not exist yet (no update or no episode since the start, no replay,
no NVML GPU) or is not finite (the loss of a skipped update) is ``null``, never missing. The
names are the design's (``loss_total``, ``avg_return``, ``recent_return_p50``...) so they stay
stable for downstream tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

METRICS_LOG = "metrics.jsonl"


@dataclass(frozen=True)
class MetricField:
    """One field of a metrics line: ``kind`` is ``int``, ``float``, ``int or null`` or
    ``float or null`` (JSON number types; ints are never written as floats)."""

    name: str
    kind: str
    unit: str
    meaning: str


FIELDS: tuple[MetricField, ...] = (
    MetricField("time", "float", "s", "Unix time the line was written"),
    MetricField("updates", "int", "updates", "learner updates so far"),
    MetricField(
        "env_frames",
        "int",
        "env frames",
        "fresh env frames consumed so far (NES frames for Mario: agent steps x frame skip)",
    ),
    MetricField("env_frames_per_sec", "float", "env frames/s", "consumption rate over ~30 s"),
    MetricField("env_steps_per_sec", "float", "agent steps/s", "env_frames_per_sec / frame skip"),
    MetricField("loss_total", "float or null", "", "total loss, mean over the interval's updates"),
    MetricField("loss_policy", "float or null", "", "policy-gradient loss (same mean)"),
    MetricField("loss_baseline", "float or null", "", "value (baseline) loss, weighted"),
    MetricField("loss_entropy", "float or null", "", "entropy loss, weighted (negative entropy)"),
    MetricField("policy_entropy", "float or null", "nats", "mean policy entropy"),
    MetricField("grad_norm", "float or null", "", "global gradient norm before clipping"),
    MetricField("learning_rate", "float or null", "", "optimiser learning rate"),
    MetricField("entropy_cost", "float or null", "", "entropy-bonus weight (it may be annealed)"),
    MetricField(
        "skipped_updates",
        "float or null",
        "fraction",
        "updates skipped for a non-finite gradient, fraction of the interval's",
    ),
    MetricField(
        "policy_lag_mean",
        "float or null",
        "versions",
        "learner version minus the behaviour policy's, mean over the interval's trained steps",
    ),
    MetricField("policy_lag_max", "float or null", "versions", "largest batch-mean lag"),
    MetricField("episodes", "int", "episodes", "episodes finished from the stage's start"),
    MetricField(
        "restored_episodes",
        "int",
        "episodes",
        "episodes from a frontier restart (env.restart_fraction), not in the figures below",
    ),
    MetricField(
        "greedy_episodes",
        "int",
        "episodes",
        "true-start episodes of greedy envs (actor.greedy_envs), not in the figures below",
    ),
    MetricField(
        "greedy_flag_rate",
        "float or null",
        "fraction",
        "flag rate of the last 100 greedy-env episodes (null without any)",
    ),
    MetricField("avg_return", "float or null", "raw reward", "mean return, last 100 episodes"),
    MetricField("recent_return_p50", "float or null", "raw reward", "median return, same window"),
    MetricField("recent_return_p90", "float or null", "raw reward", "90th percentile return"),
    MetricField("recent_return_p99", "float or null", "raw reward", "99th percentile return"),
    MetricField(
        "x_pos_mean",
        "float or null",
        "pixels",
        "mean of each episode's largest x_pos (Mario; 0 elsewhere), last 100",
    ),
    MetricField(
        "flag_rate", "float or null", "fraction", "episodes that reached the flag, last 100"
    ),
    MetricField("replay_size", "int or null", "unrolls", "unrolls held in the replay"),
    MetricField("replay_fill_rate", "float or null", "fraction", "replay size / capacity"),
    MetricField(
        "replay_avg_unique_ratio",
        "float or null",
        "fraction",
        "distinct unrolls per unroll sampled from the replay (1 = no repeats in a batch)",
    ),
    MetricField("unrolls_accepted", "int", "unrolls", "accepted for training so far"),
    MetricField("unrolls_rejected", "int", "unrolls", "rejected by validation so far"),
    MetricField("unrolls_dropped_stale", "int", "unrolls", "dropped for policy lag so far"),
    MetricField("unrolls_duplicates", "int", "unrolls", "repeated sequence numbers so far"),
    MetricField("unrolls_lost", "int", "unrolls", "sequence-number gaps so far"),
    MetricField("actors_alive", "int", "actors", "actors whose heartbeat is fresh"),
    MetricField(
        "gpu_util_mean_window",
        "float or null",
        "percent",
        "the learner's GPU utilisation from NVML, mean over its GPUs, latest heartbeat",
    ),
    MetricField(
        "gpu_mem_used_mb",
        "float or null",
        "MiB",
        "GPU memory in use, summed over the learner's GPUs",
    ),
)
"""Every field of a metrics line, in the order written."""

NAMES = tuple(f.name for f in FIELDS)


def check_record(record: dict[str, Any]) -> None:
    """Check a metrics line against :data:`FIELDS`: the same names, each of its JSON type.

    Raises:
        ValueError: naming the first missing, extra or mistyped field.
    """
    if tuple(record) != NAMES:
        missing = [n for n in NAMES if n not in record]
        extra = [n for n in record if n not in NAMES]
        raise ValueError(f"metrics line: missing {missing}, unexpected {extra} (or reordered)")
    for f in FIELDS:
        value = record[f.name]
        base, _, nullable = f.kind.partition(" or ")
        if value is None and nullable:
            continue
        ok = (
            isinstance(value, int) and not isinstance(value, bool)
            if base == "int"
            else isinstance(value, float)
        )
        if not ok:
            raise ValueError(f"{f.name}: expected {f.kind}, got {value!r}")


class MetricsLog:
    """Appends checked metrics lines to ``RUN_DIR/metrics.jsonl`` (line-buffered).

    Args:
        run_dir: the run directory.
    """

    def __init__(self, run_dir: Path) -> None:
        self._file: IO[str] = open(run_dir / METRICS_LOG, "a", buffering=1)  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line.

        Raises:
            ValueError: ``record`` does not match :data:`FIELDS` (:func:`check_record`).
        """
        check_record(record)
        self._file.write(json.dumps(record, allow_nan=False) + "\n")

    def close(self) -> None:
        self._file.close()
