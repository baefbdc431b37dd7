"""``launcher.py eval``: evaluate a checkpoint and/or the baselines on stages, with videos.

Run by: the user, through ``uv run launcher.py eval ...`` (or ``python -m evaluation ...``).
Owns: the eval command line, resolving the checkpoint and the config it was trained with,
printing the rich results table and writing ``eval.json``, ``eval.csv`` and
``eval_episodes.jsonl`` (:mod:`evaluation.evaluate` describes them). Exit status: 0 on
success, 2 on bad input (unknown stage or policy, missing checkpoint, invalid config), with a
message naming the option.

Examples::

    uv run launcher.py eval --checkpoint latest --stages 1-1,1-2 --episodes 10
    uv run launcher.py eval --checkpoint runs/X --policy agent,random,right --workers 2
    uv run launcher.py eval --checkpoint latest --greedy --video videos/ --agent-view
    uv run launcher.py eval --policy random,right --stages world:1   # baselines, no checkpoint
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from configs import schema
from configs.cli import DEFAULT_CONFIG
from evaluation.baselines import POLICY_NAMES, parse_policies
from evaluation.evaluate import (
    EpisodeResult,
    StageReport,
    load_agent,
    plan_tasks,
    run_tasks,
    stage_env_config,
    summarize,
    write_episodes,
    write_reports,
)

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Bad command-line input; the message names the option."""


def build_parser() -> argparse.ArgumentParser:
    """The ``eval`` subcommand's flags."""
    parser = argparse.ArgumentParser(
        prog="launcher.py eval",
        description="Evaluate a trained checkpoint and/or baseline policies on Mario stages: "
        "clear rate, x position, level progress, return, episode length; optional 60 fps "
        "videos.",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH|latest",
        help="checkpoint file, run directory (its newest checkpoint) or 'latest' (newest run "
        "under runs/, or in --run-dir) [default: latest when --policy includes agent]",
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="where 'latest' looks [default: runs/*]"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config for baselines without a checkpoint (env preprocessing, action set) "
        f"[default: {DEFAULT_CONFIG.name}]",
    )
    parser.add_argument(
        "--policy",
        default="agent",
        help=f"comma-separated policies: {', '.join(POLICY_NAMES)} [default: agent]",
    )
    parser.add_argument(
        "--stages",
        default=None,
        help="stages: 1-1,1-2 | 1-1..2-4 | world:1,2 | all [default: eval.stages, env.stages "
        "or env.id's stage from the config]",
    )
    parser.add_argument("--episodes", type=int, default=5, help="episodes per stage [default: 5]")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="agent: argmax action")
    mode.add_argument(
        "--sample", action="store_true", help="agent: sample from the policy [default]"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed [default: 0]")
    parser.add_argument(
        "--workers", type=int, default=1, help="parallel worker processes [default: 1]"
    )
    parser.add_argument(
        "--max-episode-steps",
        type=int,
        default=0,
        help="truncate episodes after this many agent steps [default: the config's]",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for eval.json, eval.csv and eval_episodes.jsonl [default: the "
        "checkpoint's run directory]",
    )
    parser.add_argument(
        "--video",
        type=Path,
        default=None,
        metavar="DIR",
        help="write one 60 fps MP4 per episode here ({policy}-{stage}-ep{N}.mp4)",
    )
    parser.add_argument(
        "--agent-view",
        action="store_true",
        help="videos: show the agent's preprocessed frame stack beside the game",
    )
    return parser


def _check_counts(args: argparse.Namespace) -> None:
    for name, value, low in (
        ("--episodes", args.episodes, 1),
        ("--workers", args.workers, 1),
        ("--max-episode-steps", args.max_episode_steps, 0),
    ):
        if value < low:
            raise UsageError(f"{name}: must be >= {low}, got {value}")


def _resolve(args: argparse.Namespace, policies: tuple[str, ...]) -> tuple[
    schema.Config, Path | None, Path
]:  # fmt: skip
    """The config, checkpoint (or None) and output directory for this invocation."""
    from learner.checkpoint import CheckpointError, load_checkpoint, resolve_resume

    checkpoint: Path | None = None
    if args.checkpoint is not None or "agent" in policies:
        spec = args.checkpoint or "latest"
        try:
            checkpoint = resolve_resume(spec, args.run_dir, flag="--checkpoint")
            state = load_checkpoint(checkpoint, required=("model",))
        except CheckpointError as exc:
            raise UsageError(str(exc)) from exc
        run_dir = checkpoint.parent.parent
        if "config" in state:
            config = schema.from_dict(state["config"])
        elif (run_dir / "config.toml").is_file():
            config = schema.load(run_dir / "config.toml")
        else:
            raise UsageError(f"--checkpoint: {checkpoint} holds no config and no config.toml")
        out = args.out or run_dir
    else:
        config = schema.load(args.config or DEFAULT_CONFIG)
        out = args.out or Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    return config, checkpoint, out


def _stages(spec: str | None, config: schema.Config) -> tuple[str, ...]:
    """The ``--stages`` list (or the config's default), each checked to be playable."""
    from envs.stages import parse_stages
    from evaluation.evaluate import default_stages

    if spec is None:
        stages = default_stages(config)
    elif config.env.is_mario:
        stages = parse_stages(spec, "--stages")
    else:
        stages = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not stages:
        raise UsageError("--stages: no stage given")
    for stage in stages:
        stage_env_config(config.env, stage)  # raises ValueError naming --stages
    return stages


def report_table(reports: list[StageReport]) -> Table:
    """The results as a rich table, one row per (policy, stage).

    Columns: episodes, clear rate, mean and max of the episodes' largest ``x_pos``, mean level
    progress, mean return, mean length (agent steps), seconds spent.
    """
    table = Table(title="evaluation")
    for name, justify in (
        ("policy", "left"),
        ("stage", "left"),
        ("eps", "right"),
        ("clear", "right"),
        ("mean x", "right"),
        ("max x", "right"),
        ("progress", "right"),
        ("return", "right"),
        ("steps", "right"),
        ("time s", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        table.add_row(
            r.policy,
            r.stage,
            str(r.episodes),
            f"{r.clear_rate:.0%}",
            f"{r.mean_x_pos:,.0f}",
            f"{r.max_x_pos:,}",
            f"{r.progress:.1%}",
            f"{r.mean_return:,.1f}",
            f"{r.mean_length:,.0f}",
            f"{r.seconds:.1f}",
        )
    return table


def main(argv: list[str]) -> int:
    """Run the eval command; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and pipes: keep the table's columns whole
    try:
        _check_counts(args)
        policies = parse_policies(args.policy)
        config, checkpoint, out = _resolve(args, policies)
        stages = _stages(args.stages, config)
        if "right" in policies and not config.env.is_mario:
            raise UsageError(f"--policy right: only for Mario envs, not {config.env.id!r}")
        if checkpoint is not None and "agent" in policies:
            try:
                load_agent(config, checkpoint)  # fail here, not in every worker
            except RuntimeError as exc:
                raise UsageError(
                    f"--checkpoint: {checkpoint} does not fit its config's model: {exc}"
                ) from exc
    except (UsageError, ValueError, schema.ConfigError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_BAD_INPUT

    tasks = plan_tasks(
        policies,
        stages,
        args.episodes,
        args.workers,
        config=schema.to_dict(config),
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        greedy=bool(args.greedy),
        seed=args.seed,
        max_episode_steps=args.max_episode_steps,
        video_dir=str(args.video) if args.video is not None else None,
        agent_view=bool(args.agent_view),
    )
    total = len(policies) * len(stages) * args.episodes
    console.print(
        f"evaluating {', '.join(policies)} on {len(stages)} stage(s) x {args.episodes} "
        f"episodes ({'greedy' if args.greedy else 'sampled'} agent, seed {args.seed}, "
        f"{args.workers} worker(s))"
        + (f"; checkpoint {checkpoint}" if checkpoint is not None else ""),
        highlight=False,
    )
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        job = bar.add_task("episodes", total=total)

        def advance(result: EpisodeResult) -> None:
            bar.update(job, advance=1, description=f"{result.policy} {result.stage}")

        results = run_tasks(tasks, args.workers, on_result=advance)
    reports = summarize(results)
    console.print(report_table(reports))
    json_path, csv_path = write_reports(reports, out)
    episodes_path = write_episodes(results, out)
    console.print(
        f"wrote {json_path}, {csv_path.name} and {episodes_path.name} in "
        f"{time.perf_counter() - start:.1f} s",
        highlight=False,
    )
    if args.video is not None:
        console.print(f"videos in {args.video}", highlight=False)
    return 0
