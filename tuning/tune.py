"""``launcher.py tune``: hyperparameter search with Optuna over real training runs.

Run by: the user, through ``uv run launcher.py tune --trials N --minutes-per-trial M
[--config C] [--run-dir DIR] [--storage URL] [-- LAUNCHER FLAGS...]``. Owns the Optuna study
(its storage, sampler and pruner), one launcher subprocess at a time (each trial is a real
``launcher.py`` run from scratch, in ``RUN_DIR/trial-NNN`` on its own free loopback ports,
stopped with SIGTERM at its deadline or when pruned; see :class:`launch.harness.TrainingRun`),
``RUN_DIR/best.toml`` and the printed summary.

What is searched (:func:`suggest`): ``learner.learning_rate`` (log-uniform 3e-5 .. 3e-3),
``learner.entropy_cost`` (log-uniform 1e-4 .. 0.1), ``actor.unroll_length`` (10, 20, 40),
``learner.discount`` (0.9 .. 0.995) and the replay ratio (``replay.ratio`` 0.25 .. 0.75, or 0 =
``replay.enabled = false``). Everything else comes from ``--config`` and the flags after ``--``.
On a new study the first trial is the preset's own values (when they lie in the space), so the
search always measures where it started from.

Objective (maximised): for Mario envs the mean over the last 100 episodes of each episode's
largest ``x_pos`` (``mean_max_x``, as ``bench.learn`` prints it); for other envs (CartPole) the
mean return over the last 100 episodes, since they have no ``x_pos``. Each trial reports that
figure every minute (every 10 s for trials shorter than 5 minutes; ``--report-every``) and
Optuna's :class:`~optuna.pruners.MedianPruner` stops a trial whose figure is below the median
of earlier trials at the same step, after ``--startup-trials`` complete trials and the first
third of the trial's steps (early figures mostly measure start-up). A trial's value is its
figure at the deadline. A trial whose launcher fails is recorded as failed and the search goes
on.

Storage: ``sqlite:///RUN_DIR/optuna.db`` by default, so a search can be resumed (run again with
the same ``--run-dir``, or ``--storage`` and ``--study-name``) or shared by several machines
through one database URL. At the end it prints the best trial as a TOML snippet after the line
``# --- best trial (TOML) ---`` (the rest of stdout before it is one line per trial) and writes
``RUN_DIR/best.toml``: the preset with the best values, ready for ``launcher.py --config``.
Exit status: 0 with a best trial, 1 when no trial completed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import tomli_w

from configs import schema
from configs.cli import DEFAULT_CONFIG
from launch.harness import RunError, RunProgress, TrainingRun, marks, watch

SNIPPET_MARKER = "# --- best trial (TOML) ---"
LEARNING_RATE = (3e-5, 3e-3)
ENTROPY_COST = (1e-4, 0.1)
UNROLL_LENGTHS = (10, 20, 40)
DISCOUNTS = (0.9, 0.95, 0.98, 0.99, 0.995)
REPLAY_RATIOS = (0.0, 0.25, 0.5, 0.75)


class TrialFailed(RuntimeError):
    """A trial's launcher exited before its deadline; Optuna records the trial as failed."""


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """Sample one point of the search space: Optuna parameter name -> value."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", *LEARNING_RATE, log=True),
        "entropy_cost": trial.suggest_float("entropy_cost", *ENTROPY_COST, log=True),
        "unroll_length": trial.suggest_categorical("unroll_length", UNROLL_LENGTHS),
        "discount": trial.suggest_categorical("discount", DISCOUNTS),
        "replay_ratio": trial.suggest_categorical("replay_ratio", REPLAY_RATIOS),
    }


def config_values(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Search parameters as config sections (``{"learner": {...}, ...}``)."""
    ratio = float(params["replay_ratio"])
    replay: dict[str, Any] = {"enabled": ratio > 0}
    if ratio > 0:
        replay["ratio"] = ratio
    return {
        "learner": {
            "learning_rate": float(params["learning_rate"]),
            "entropy_cost": float(params["entropy_cost"]),
            "discount": float(params["discount"]),
        },
        "actor": {"unroll_length": int(params["unroll_length"])},
        "replay": replay,
    }


def overrides(params: dict[str, Any]) -> list[str]:
    """Search parameters as launcher flags (``--section.field VALUE``, TOML values)."""
    flags: list[str] = []
    for section, values in config_values(params).items():
        for key, value in values.items():
            text = tomli_w.dumps({"v": value}).split("=", 1)[1].strip()
            flags += [f"--{section}.{key}", text]
    return flags


def preset_params(config: schema.Config) -> dict[str, Any] | None:
    """The preset's own values as search parameters, or None if any lies outside the space."""
    lc = config.learner
    ratio = config.replay.ratio if config.replay.enabled else 0.0
    inside = (
        LEARNING_RATE[0] <= lc.learning_rate <= LEARNING_RATE[1]
        and ENTROPY_COST[0] <= lc.entropy_cost <= ENTROPY_COST[1]
        and config.actor.unroll_length in UNROLL_LENGTHS
        and lc.discount in DISCOUNTS
        and ratio in REPLAY_RATIOS
    )
    if not inside:
        return None
    return {
        "learning_rate": lc.learning_rate,
        "entropy_cost": lc.entropy_cost,
        "unroll_length": config.actor.unroll_length,
        "discount": lc.discount,
        "replay_ratio": ratio,
    }


class Objective:
    """One trial: a launcher run for ``minutes``, its figure reported every ``report_s``.

    Args:
        config: the preset; run_dir: where ``trial-NNN`` directories go; minutes: per trial;
        report_s: seconds between reports; metric: key of :meth:`RunProgress.figures`;
        extra: launcher flags from the command line (the searched values override them).
    """

    def __init__(
        self,
        config: Path,
        run_dir: Path,
        minutes: float,
        report_s: float,
        metric: str,
        extra: list[str],
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.deadline_s = minutes * 60.0
        self.report_s = report_s
        self.metric = metric
        self.extra = extra

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial)
        trial_dir = self.run_dir / f"trial-{trial.number:03d}"
        trial.set_user_attr("run_dir", str(trial_dir))
        run = TrainingRun(self.config, trial_dir, [*self.extra, *overrides(params)])
        progress = RunProgress(trial_dir)
        value = 0.0
        run.start()
        try:
            for step, (_, figures) in enumerate(
                watch(run, progress, marks(self.deadline_s, self.report_s)), start=1
            ):
                value = float(figures[self.metric])
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{self.metric} {value:g} at step {step}")
        except RunError as exc:
            raise TrialFailed(str(exc)) from exc
        finally:
            trial.set_user_attr("seconds", round(run.elapsed, 1))
            run.stop()
            figures = progress.figures()  # as at the last report: not updated after the stop
            for key in ("env_frames", "updates", "episodes", "flag_rate", "first_flag_frames"):
                trial.set_user_attr(key, figures[key])
        return value


def best_snippet(study: optuna.Study, metric: str, minutes: float) -> tuple[str, dict[str, Any]]:
    """The best complete trial as TOML (comment header + searched sections) and its values.

    Raises:
        ValueError: no trial of the study is complete.
    """
    best = study.best_trial
    values = config_values(best.params)
    counts = {
        state.name.lower(): sum(t.state == state for t in study.trials)
        for state in (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        )
    }
    header = (
        f'# best of study "{study.study_name}": trial {best.number}, {metric} = '
        f"{best.value:.2f} after {minutes:g} min "
        f"({best.user_attrs.get('env_frames', '?')} env frames)\n"
        f"# trials: {', '.join(f'{n} {state}' for state, n in counts.items())}\n"
    )
    return header + "\n" + tomli_w.dumps(values), values


def _trial_line(metric: str) -> Any:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = trial.value if trial.value is not None else _last_report(trial)
        shown = "-" if value is None else f"{value:.2f}"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        print(
            f"trial {trial.number} {trial.state.name.lower()}: {metric} {shown} "
            f"({trial.user_attrs.get('env_frames', 0):,} env frames) | {params}",
            flush=True,
        )

    return callback


def _last_report(trial: optuna.trial.FrozenTrial) -> float | None:
    reports = trial.intermediate_values
    return reports[max(reports)] if reports else None


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launcher.py tune",
        description="Search learning rate, entropy cost, unroll length, discount and replay "
        "ratio with Optuna (TPE + median pruning); each trial is a real launcher run.",
        epilog="Flags after `--` go to every trial's launcher, e.g. `-- --run.num_actors 2`.",
    )
    parser.add_argument("--trials", type=int, required=True, help="trials to run now")
    parser.add_argument(
        "--minutes-per-trial", type=float, required=True, help="wall-clock minutes per trial"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"preset to search around [default: {DEFAULT_CONFIG.name}]",
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="[default: runs/tune-<timestamp>]"
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage URL, to resume or share a search [default: "
        "sqlite:///RUN_DIR/optuna.db]",
    )
    parser.add_argument(
        "--study-name", default=None, help="[default: the config file's stem, e.g. mario-1-1]"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed [default: 0]")
    parser.add_argument(
        "--report-every",
        type=float,
        default=None,
        metavar="S",
        help="seconds between intermediate reports [default: 60, or 10 for trials under 5 min]",
    )
    parser.add_argument(
        "--startup-trials",
        type=int,
        default=3,
        help="complete trials before pruning starts [default: 3]",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the search; returns the exit status (0 ok, 1 no complete trial, 2 bad input)."""
    args_in, extra = list(argv), []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(args_in)
    try:
        if args.trials < 1:
            raise ValueError(f"--trials: must be >= 1, got {args.trials}")
        if args.minutes_per_trial <= 0:
            raise ValueError(f"--minutes-per-trial: must be > 0, got {args.minutes_per_trial}")
        if args.report_every is not None and args.report_every <= 0:
            raise ValueError(f"--report-every: must be > 0, got {args.report_every}")
        config = schema.load(args.config)
    except (ValueError, schema.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = (args.run_dir or Path("runs") / time.strftime("tune-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{run_dir / 'optuna.db'}"
    metric = "mean_max_x" if config.env.is_mario else "mean_return"
    deadline_s = args.minutes_per_trial * 60.0
    report_s = args.report_every or (60.0 if args.minutes_per_trial >= 5 else 10.0)
    steps = len(marks(deadline_s, report_s))

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    # SIGTERM unwinds like Ctrl+C, so the running trial's launcher is stopped, not orphaned
    signal.signal(signal.SIGTERM, _interrupt)
    study = optuna.create_study(
        storage=storage,
        study_name=args.study_name or args.config.stem,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=args.startup_trials, n_warmup_steps=max(1, steps // 3)
        ),
    )
    study.set_user_attr("config", str(args.config))
    study.set_user_attr("objective", metric)
    if not study.trials and (start := preset_params(config)) is not None:
        study.enqueue_trial(start)
    print(
        f"study {study.study_name!r} in {storage}: {args.trials} trial(s) of "
        f"{args.minutes_per_trial:g} min on {config.env.id}, maximising {metric} "
        f"(reported every {report_s:g} s); trial runs in {run_dir}/trial-NNN",
        flush=True,
    )
    objective = Objective(args.config, run_dir, args.minutes_per_trial, report_s, metric, extra)
    try:
        study.optimize(objective, n_trials=args.trials, catch=(TrialFailed,),
                       callbacks=[_trial_line(metric)])  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted; the study keeps its finished trials", file=sys.stderr)
    try:
        snippet, values = best_snippet(study, metric, args.minutes_per_trial)
    except ValueError:
        print("no trial completed: nothing to recommend", file=sys.stderr)
        return 1
    best = schema.to_dict(config)
    for section, fields in values.items():
        best[section].update(fields)
    best_path = run_dir / "best.toml"
    schema.save(schema.from_dict(best), best_path)
    print(f"best config (the preset with these values): {best_path}", flush=True)
    print(SNIPPET_MARKER)
    print(snippet, end="", flush=True)
    return 0
