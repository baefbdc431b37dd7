"""The learning-curve PNG of a training run (``RUN_DIR/learning_curve.png``).

Run by: ``bench.learn`` after a run. Owns the figure: each true-start episode's largest
``x_pos`` (or its return for non-Mario envs) against env frames, with its 100-episode mean and
p90, the baselines as horizontal lines, the 100-episode flag rate, and the final eval's clear
rates and progress per stage. Drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.final_eval import FinalEval
from launch.harness import WINDOW


def plot_curve(
    episodes: list[dict[str, Any]],
    baselines: dict[str, dict[str, float]] | None,
    mario: bool,
    path: Path,
    title: str,
    final_eval: FinalEval | None = None,
) -> None:
    """Write the learning curve PNG (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    frames = np.array([e["env_frames"] for e in episodes], dtype=np.float64) / 1e6
    key = "max_x_pos" if mario else "return"
    values = np.array([e.get(key, 0) for e in episodes], dtype=np.float64)
    flags = np.array([bool(e.get("flag_get")) for e in episodes], dtype=np.float64)
    mean, p90 = np.zeros_like(values), np.zeros_like(values)
    for i in range(len(values)):
        window = values[max(0, i + 1 - WINDOW) : i + 1]
        mean[i], p90[i] = window.mean(), np.percentile(window, 90)
    flag_rate = np.convolve(flags, np.ones(WINDOW), "full")[: len(flags)] / np.minimum(
        np.arange(1, len(flags) + 1), WINDOW
    )
    rows = 2 if mario else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 * rows + 1), sharex=True, squeeze=False)
    ax = axes[0][0]
    label = "max x_pos per episode" if mario else "return per episode"
    ax.scatter(frames, values, s=3, alpha=0.25, color="tab:gray", label=label)
    ax.plot(frames, mean, color="tab:blue", label=f"mean of last {WINDOW}")
    ax.plot(frames, p90, color="tab:cyan", label=f"p90 of last {WINDOW}")
    for (policy, figures), color in zip((baselines or {}).items(), ("tab:red", "tab:orange")):
        ax.axhline(figures["mean_x_pos"], color=color, linestyle="--",
                   label=f"{policy} baseline (mean {figures['mean_x_pos']:.0f})")  # fmt: skip
    ax.set_ylabel("x_pos" if mario else "return")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    if mario:
        ax2 = axes[1][0]
        ax2.plot(frames, flag_rate, color="tab:green")
        ax2.set_ylabel(f"flag rate (last {WINDOW})")
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(alpha=0.3)
        if final_eval is not None:
            text = f"final eval, {final_eval.episodes} episodes/stage\n" + "\n".join(
                f"{stage}: clear greedy {final_eval.clear_rate['greedy'][stage]:.2f}, "
                f"sampled {final_eval.clear_rate['sampled'][stage]:.2f}; progress "
                f"{final_eval.progress['greedy'][stage]:.2f} / "
                f"{final_eval.progress['sampled'][stage]:.2f}"
                for stage in final_eval.clear_rate["greedy"]
                if stage != "mean" or len(final_eval.clear_rate["greedy"]) > 2
            )
            ax2.text(0.01, 0.97, text, transform=ax2.transAxes, va="top", fontsize=7,
                     family="monospace", bbox={"facecolor": "white", "alpha": 0.8})  # fmt: skip
    axes[-1][0].set_xlabel("env frames (millions)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
