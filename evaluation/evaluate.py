"""Play policies on stages and measure them: clear rate, x position, progress, return, length.

Run by: ``launcher.py eval`` (in-process or in spawned worker processes, one task at a time)
and the eval actor (in its own process).
Owns: the evaluation env for one stage, one episode's loop (:func:`run_episode`), the unit of
parallel work (:class:`EvalTask`: one policy on one stage for some episodes), per-stage
aggregation (:class:`StageReport`) and the report files: ``eval.json`` (policy -> stage ->
metrics), ``eval.csv`` (the same, one row per policy and stage) and ``eval_episodes.jsonl``
(one line per episode).

Reproducibility: episode ``i`` of stage ``s`` draws its policy randomness from
``episode_seed(seed, s, i)``, whatever task or worker runs it, so results do not depend on
``--workers``. (The NES itself is deterministic; only the policy is random.)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium
import numpy as np

from configs import schema
from configs.schema import EnvConfig
from envs.factory import make_env, mario_action_set
from envs.preprocessing import FrameHook
from envs.spec import num_actions, observation_spec
from envs.stages import parse_stages, progress, stage_env_id, stage_of_env_id
from evaluation.baselines import AgentPolicy, Policy, RandomPolicy, RightPolicy
from evaluation.video import EpisodeRecorder, FrameRelay, Mp4Writer
from models import ActorCritic, build_model

#: Metric names of a :class:`StageReport`, in ``eval.json`` / ``eval.csv`` order.
METRICS: tuple[str, ...] = (
    "clear_rate",
    "mean_x_pos",
    "max_x_pos",
    "progress",
    "mean_return",
    "mean_length",
    "seconds",
)


class EvaluationStopped(Exception):
    """The caller asked evaluation to stop (e.g. SIGTERM) in the middle of an episode."""


class EpisodeOutcome(NamedTuple):
    """What :func:`run_episode` measures (the env's ``info["episode"]`` plus time).

    Attributes:
        episode_return: sum of raw env rewards.
        length: agent steps.
        max_x_pos: largest ``x_pos`` in pixels (0 for non-Mario envs).
        flag_get: whether the flag (or axe) was reached.
        stage: ``"W-S"`` of the last step (the env id for non-Mario envs).
        seconds: wall-clock seconds, video encoding included.
    """

    episode_return: float
    length: int
    max_x_pos: int
    flag_get: bool
    stage: str
    seconds: float


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluation episode.

    Attributes:
        policy: ``agent``, ``random`` or ``right``.
        stage: ``"W-S"`` (or the env id for non-Mario envs).
        episode: index within the stage, from 0.
        episode_return: sum of raw env rewards.
        length: agent steps.
        max_x_pos: largest ``x_pos`` in pixels (0 for non-Mario envs).
        flag_get: whether the flag (or axe) was reached.
        progress: fraction of the level reached in [0, 1] (:func:`envs.stages.progress`).
        seconds: wall-clock seconds the episode took (video encoding included).
        video_frames: frames written to the episode's video (0 without one).
        video_path: the MP4 file, or None.
    """

    policy: str
    stage: str
    episode: int
    episode_return: float
    length: int
    max_x_pos: int
    flag_get: bool
    progress: float
    seconds: float
    video_frames: int = 0
    video_path: str | None = None

    @classmethod
    def of(
        cls,
        policy: str,
        stage: str,
        episode: int,
        outcome: EpisodeOutcome,
        video_frames: int = 0,
        video_path: str | None = None,
    ) -> EpisodeResult:
        """The result of ``outcome``, with ``progress`` computed for ``stage``."""
        return cls(
            policy=policy,
            stage=stage,
            episode=episode,
            episode_return=outcome.episode_return,
            length=outcome.length,
            max_x_pos=outcome.max_x_pos,
            flag_get=outcome.flag_get,
            progress=progress(stage, outcome.max_x_pos, outcome.flag_get),
            seconds=outcome.seconds,
            video_frames=video_frames,
            video_path=video_path,
        )


@dataclass(frozen=True)
class StageReport:
    """One policy on one stage, over its episodes. Fields as in ``eval.json`` (:data:`METRICS`).

    ``clear_rate`` and ``progress`` are in [0, 1]; ``mean_x_pos``/``max_x_pos`` in pixels;
    ``mean_length`` in agent steps; ``seconds`` sums the episodes' wall-clock time.
    """

    policy: str
    stage: str
    episodes: int
    clear_rate: float
    mean_x_pos: float
    max_x_pos: int
    progress: float
    mean_return: float
    mean_length: float
    seconds: float

    def metrics(self) -> dict[str, Any]:
        """``{metric: value}`` for :data:`METRICS`, plus ``episodes``."""
        return {"episodes": self.episodes, **{m: getattr(self, m) for m in METRICS}}


@dataclass(frozen=True)
class EvalTask:
    """One policy on one stage for some episodes; picklable, so it can go to a worker process.

    Attributes:
        policy: ``agent``, ``random`` or ``right``.
        stage: ``"W-S"`` for Mario, the env id otherwise.
        episodes: episode indices to play (each seeded on its own).
        config: the run's config as :func:`configs.schema.to_dict` gives it.
        checkpoint: checkpoint file with the agent's weights (``agent`` only).
        greedy: agent takes the argmax action instead of sampling.
        seed: base seed (see the module docstring).
        max_episode_steps: truncate episodes after this many agent steps; 0 = the config's.
        video_dir: write ``{policy}-{stage}-ep{episode:02d}.mp4`` here, or None.
        agent_view: add the agent's view beside the game in videos.
    """

    policy: str
    stage: str
    episodes: tuple[int, ...]
    config: dict[str, Any]
    checkpoint: str | None = None
    greedy: bool = False
    seed: int = 0
    max_episode_steps: int = 0
    video_dir: str | None = None
    agent_view: bool = False


def episode_seed(seed: int, stage: str, episode: int) -> int:
    """A 32-bit seed for one episode, independent of which worker plays it."""
    entropy = [seed, episode, *stage.encode()]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def default_stages(config: schema.Config) -> tuple[str, ...]:
    """Stages to evaluate when none are given: ``eval.stages``, else ``env.stages``, else the
    stage of ``env.id`` (1-1 for the full-game id); the env id itself for non-Mario envs."""
    if not config.env.is_mario:
        return (config.env.id,)
    if config.eval.stages:
        return parse_stages(config.eval.stages, "eval.stages")
    if config.env.stages:
        return config.env.resolved_stages
    return (stage_of_env_id(config.env.id) or "1-1",)


def stage_env_config(env: EnvConfig, stage: str, max_episode_steps: int = 0) -> EnvConfig:
    """The env config that plays exactly ``stage`` from its start (no stage sampling, no
    frontier restarts: evaluation always starts at the stage's true start).

    Args:
        env: the run's env section (preprocessing, action set).
        stage: ``"W-S"`` for Mario; for other envs it must be ``env.id``.
        max_episode_steps: overrides ``env.max_episode_steps`` when > 0.

    Raises:
        ValueError: a non-Mario stage other than ``env.id``, or a bad stage name.
    """
    steps = max_episode_steps or env.max_episode_steps
    if not env.is_mario:
        if stage != env.id:
            raise ValueError(f"--stages: {env.id!r} is not a Mario env; it has no stage {stage}")
        return dataclasses.replace(env, max_episode_steps=steps, restart_fraction=0.0)
    if not env.id.startswith("SuperMarioBros-"):
        raise ValueError(f"--stages: stages name SMB1 levels; env.id is {env.id!r}")
    return dataclasses.replace(
        env, id=stage_env_id(stage), stages=(), max_episode_steps=steps, restart_fraction=0.0
    )


def make_stage_env(
    env: EnvConfig,
    stage: str,
    *,
    max_episode_steps: int = 0,
    frame_hook: FrameHook | None = None,
) -> gymnasium.Env:
    """:func:`envs.factory.make_env` for one stage (see :func:`stage_env_config`)."""
    return make_env(stage_env_config(env, stage, max_episode_steps), frame_hook=frame_hook)


def load_agent(config: schema.Config, checkpoint: str | Path) -> ActorCritic:
    """Build the run's model and load a checkpoint's ``model`` weights (CPU, eval mode).

    Raises:
        learner.checkpoint.CheckpointError: the checkpoint is missing or unreadable.
        RuntimeError: its weights do not fit the model the config describes.
    """
    from learner.checkpoint import load_checkpoint

    state = load_checkpoint(Path(checkpoint), required=("model",))
    model = build_model_for(config)
    model.load_state_dict(state["model"])
    return model.eval()


def build_model_for(config: schema.Config) -> ActorCritic:
    """A fresh model for the config's env (observation shape and action count)."""
    obs_shape, _ = observation_spec(config.env)
    return build_model(config.model, obs_shape, num_actions(config.env))


def make_policy(
    name: str, config: schema.Config, seed: int, *, model: ActorCritic | None, greedy: bool
) -> Policy:
    """The policy called ``name`` for one episode, seeded with ``seed``.

    Raises:
        ValueError: unknown name, ``agent`` without a model, ``right`` for a non-Mario env.
    """
    if name == "agent":
        if model is None:
            raise ValueError("--policy agent needs a checkpoint (--checkpoint)")
        return AgentPolicy(model, greedy, seed)
    if name == "random":
        return RandomPolicy(num_actions(config.env), seed)
    if name == "right":
        if not config.env.is_mario:
            raise ValueError(f"--policy right: only for Mario envs, not {config.env.id!r}")
        return RightPolicy(mario_action_set(config.env))
    raise ValueError(f"--policy: unknown policy {name!r}")


def run_episode(
    env: gymnasium.Env,
    policy: Policy,
    *,
    seed: int | None = None,
    recorder: EpisodeRecorder | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EpisodeOutcome:
    """Play one episode to its end.

    Args:
        env: an env from :func:`make_stage_env`; if ``recorder`` is given, its frame hook must
            already feed ``recorder.on_frame``.
        policy: chooses the actions.
        seed: passed to ``env.reset``.
        recorder: receives the episode's frames, flushed after every agent step.
        should_stop: polled before every agent step.

    Returns:
        The episode's figures, from the env's ``info["episode"]`` on its last step.

    Raises:
        EvaluationStopped: ``should_stop()`` returned True.
    """
    start = time.perf_counter()
    policy.reset()
    obs, _ = env.reset(seed=seed)
    if recorder is not None:
        recorder.flush(obs)
    while True:
        if should_stop is not None and should_stop():
            raise EvaluationStopped
        action = policy.act(obs)
        next_obs, _, terminated, truncated, info = env.step(action)
        if recorder is not None:
            recorder.flush(obs)  # the frames of this step, beside the view they were chosen on
        obs = next_obs
        if terminated or truncated:
            ep = info["episode"]
            return EpisodeOutcome(
                episode_return=float(ep["return"]),
                length=int(ep["length"]),
                max_x_pos=int(ep["max_x_pos"]),
                flag_get=bool(ep["flag_get"]),
                stage=str(ep["stage"]),
                seconds=time.perf_counter() - start,
            )


def run_task(task: EvalTask) -> list[EpisodeResult]:
    """Play one :class:`EvalTask` (the function worker processes run).

    Raises:
        ValueError: bad policy/stage for this config; CheckpointError: bad checkpoint.
    """
    import torch

    torch.set_num_threads(1)  # one worker per core: intra-op threads would only contend
    config = schema.from_dict(task.config)
    model = None
    if task.policy == "agent":
        if task.checkpoint is None:
            raise ValueError("--policy agent needs a checkpoint (--checkpoint)")
        model = load_agent(config, task.checkpoint)
    relay = FrameRelay()
    hook = relay if task.video_dir is not None and config.env.is_mario else None
    env = make_stage_env(
        config.env, task.stage, max_episode_steps=task.max_episode_steps, frame_hook=hook
    )
    results = []
    try:
        for episode in task.episodes:
            seed = episode_seed(task.seed, task.stage, episode)
            policy = make_policy(task.policy, config, seed, model=model, greedy=task.greedy)
            writer: Mp4Writer | None = None
            recorder: EpisodeRecorder | None = None
            if hook is not None and task.video_dir is not None:
                name = f"{task.policy}-{task.stage}-ep{episode:02d}.mp4"
                writer = Mp4Writer(Path(task.video_dir) / name)
                recorder = EpisodeRecorder([writer], agent_view=task.agent_view)
                relay.target = recorder.on_frame
            try:
                outcome = run_episode(env, policy, seed=seed, recorder=recorder)
            finally:
                relay.target = None
                if writer is not None:
                    writer.close()
            results.append(
                EpisodeResult.of(
                    task.policy,
                    task.stage,
                    episode,
                    outcome,
                    video_frames=recorder.frames if recorder is not None else 0,
                    video_path=str(writer.path) if writer is not None else None,
                )
            )
    finally:
        env.close()
    return results


def plan_tasks(
    policies: Sequence[str],
    stages: Sequence[str],
    episodes: int,
    workers: int,
    **common: Any,
) -> list[EvalTask]:
    """Split the work: one task per (policy, stage) in-process, one per episode for workers.

    ``common`` holds the remaining :class:`EvalTask` fields (config, checkpoint, seed, ...).
    """
    if workers <= 1:
        return [
            EvalTask(policy=p, stage=s, episodes=tuple(range(episodes)), **common)
            for p in policies
            for s in stages
        ]
    return [
        EvalTask(policy=p, stage=s, episodes=(i,), **common)
        for p in policies
        for s in stages
        for i in range(episodes)
    ]


def run_tasks(
    tasks: Sequence[EvalTask],
    workers: int = 1,
    on_result: Callable[[EpisodeResult], None] | None = None,
) -> list[EpisodeResult]:
    """Run tasks in this process (``workers <= 1``) or in ``workers`` spawned processes.

    Args:
        tasks: from :func:`plan_tasks`.
        workers: worker processes; spawned (not forked) so no emulator or torch state is
            shared with this process.
        on_result: called with each episode's result as its task finishes (progress bars).

    Returns:
        All episode results, in task order (whatever order the workers finish in).
    """
    if workers <= 1:
        out = []
        for task in tasks:
            for result in run_task(task):
                out.append(result)
                if on_result is not None:
                    on_result(result)
        return out
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_task, task): i for i, task in enumerate(tasks)}
        done: dict[int, list[EpisodeResult]] = {}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if on_result is not None:
                for result in done[futures[future]]:
                    on_result(result)
        return [result for i in range(len(tasks)) for result in done[i]]


def summarize(results: Iterable[EpisodeResult]) -> list[StageReport]:
    """Aggregate episodes per (policy, stage), in first-seen order."""
    groups: dict[tuple[str, str], list[EpisodeResult]] = {}
    for r in results:
        groups.setdefault((r.policy, r.stage), []).append(r)
    reports = []
    for (policy, stage), eps in groups.items():
        reports.append(
            StageReport(
                policy=policy,
                stage=stage,
                episodes=len(eps),
                clear_rate=float(np.mean([e.flag_get for e in eps])),
                mean_x_pos=float(np.mean([e.max_x_pos for e in eps])),
                max_x_pos=int(max(e.max_x_pos for e in eps)),
                progress=float(np.mean([e.progress for e in eps])),
                mean_return=float(np.mean([e.episode_return for e in eps])),
                mean_length=float(np.mean([e.length for e in eps])),
                seconds=float(sum(e.seconds for e in eps)),
            )
        )
    return reports


def write_reports(reports: Sequence[StageReport], out_dir: Path) -> tuple[Path, Path]:
    """Write ``eval.json`` (policy -> stage -> metrics) and ``eval.csv`` (one row per pair).

    ``mean_x_pos`` is the mean over episodes of each episode's largest ``x_pos``.

    Returns:
        ``(json_path, csv_path)``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    nested: dict[str, dict[str, dict[str, Any]]] = {}
    for r in reports:
        nested.setdefault(r.policy, {})[r.stage] = r.metrics()
    json_path = out_dir / "eval.json"
    json_path.write_text(json.dumps(nested, indent=2) + "\n")
    csv_path = out_dir / "eval.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["policy", "stage", "episodes", *METRICS])
        for r in reports:
            writer.writerow([r.policy, r.stage, r.episodes, *(getattr(r, m) for m in METRICS)])
    return json_path, csv_path


def write_episodes(results: Sequence[EpisodeResult], out_dir: Path) -> Path:
    """Write ``eval_episodes.jsonl``: one JSON line per episode (every
    :class:`EpisodeResult` field), the raw data behind ``eval.json``.

    Returns:
        The file's path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "eval_episodes.jsonl"
    with path.open("w") as fh:
        for r in results:
            fh.write(json.dumps(dataclasses.asdict(r)) + "\n")
    return path
