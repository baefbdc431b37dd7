"""Benchmark Mario preprocessing (fused vs Gymnasium chain) and SyncVectorEnv overhead.

Run by: a developer, ``python -m bench.env_preprocessing [--seconds 20]``.
Owns: the numbers quoted in ``envs/factory.py``'s docstring.

Method: everything runs in this one process pinned to one CPU core, with uniform random actions
from a fixed seed (each variant replays the same action sequence, so visits the same game
states). Variants are measured in interleaved rounds (A, B, A, B, ...) so drift in machine load
hits both alike, and rates are given per second of this process's CPU time (robust when other
processes share the core) as well as per wall second. "Env frames" are agent steps times
``frame_skip`` (the project's frame accounting; an episode that ends mid-skip steps slightly
fewer NES frames).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from configs.schema import EnvConfig
from envs.factory import make_env, make_vector_env

# A runner steps its env(s) until the CPU-time deadline and returns the agent steps it made.
Runner = Callable[[float], int]


def _raw_runner(cfg: EnvConfig) -> Runner:
    """Bare JoypadSpace env, one NES frame per step (reported per NES frame)."""
    import gym_super_mario_bros  # noqa: F401
    import gymnasium
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    env = JoypadSpace(gymnasium.make(cfg.id), SIMPLE_MOVEMENT)
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def run(deadline: float) -> int:
        steps = 0
        while time.process_time() < deadline:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(len(SIMPLE_MOVEMENT))))
            steps += 1
            if terminated or truncated:
                env.reset()
        return steps

    return run


def _single_runner(cfg: EnvConfig, preprocessing: str) -> Runner:
    env = make_env(cfg, seed=0, preprocessing=preprocessing)  # type: ignore[arg-type]
    env.reset()
    n = int(env.action_space.n)
    rng = np.random.default_rng(0)

    def run(deadline: float) -> int:
        steps = 0
        while time.process_time() < deadline:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
            steps += 1
            if terminated or truncated:
                env.reset()
        return steps

    return run


def _plain_loop_runner(cfg: EnvConfig, num_envs: int) -> Runner:
    """The same envs stepped in a Python loop, obs written into one batch array (the minimum)."""
    envs = [make_env(cfg, seed=i) for i in range(num_envs)]
    batch = np.empty((num_envs, *envs[0].observation_space.shape), dtype=np.uint8)
    for i, env in enumerate(envs):
        batch[i] = env.reset()[0]
    n = int(envs[0].action_space.n)
    rng = np.random.default_rng(0)

    def run(deadline: float) -> int:
        steps = 0
        while time.process_time() < deadline:
            actions = rng.integers(n, size=num_envs)
            for i, env in enumerate(envs):
                obs, _, terminated, truncated, _ = env.step(int(actions[i]))
                if terminated or truncated:
                    obs, _ = env.reset()
                batch[i] = obs
            steps += num_envs
        return steps

    return run


def _vector_runner(cfg: EnvConfig, num_envs: int) -> Runner:
    envs = make_vector_env(cfg, num_envs, seed=0)
    envs.reset()
    n = int(envs.single_action_space.n)
    rng = np.random.default_rng(0)

    def run(deadline: float) -> int:
        steps = 0
        while time.process_time() < deadline:
            envs.step(rng.integers(n, size=num_envs))
            steps += num_envs
        return steps

    return run


def _vector_overhead_us(cfg: EnvConfig, num_envs: int, seconds: float) -> tuple[float, float]:
    """CPU time of ``SyncVectorEnv.step`` not spent inside the sub-envs' step/reset.

    Returns:
        (overhead in us per vector step, overhead as a fraction of the vector step's CPU time).
    """
    envs = make_vector_env(cfg, num_envs, seed=0)
    envs.reset()
    inner = [0.0]

    def timed(fn: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                inner[0] += time.process_time() - start

        return call

    for env in envs.envs:
        env.step = timed(env.step)  # type: ignore[method-assign]
        env.reset = timed(env.reset)  # type: ignore[method-assign]
    n = int(envs.single_action_space.n)
    rng = np.random.default_rng(0)
    total, steps = 0.0, 0
    while total < seconds:
        actions = rng.integers(n, size=num_envs)
        start = time.process_time()
        envs.step(actions)
        total += time.process_time() - start
        steps += 1
    envs.close()
    return (total - inner[0]) / steps * 1e6, (total - inner[0]) / total


def _compare(
    runners: dict[str, Runner], seconds: float, rounds: int, frames_per_step: int
) -> dict[str, tuple[float, float]]:
    """Interleave the runners; return {name: (frames per CPU s, frames per wall s)}."""
    totals = {name: [0, 0.0, 0.0] for name in runners}
    for run in runners.values():  # warm-up: first allocations, cv2's first call
        run(time.process_time() + 0.5)
    for _ in range(rounds):
        for name, run in runners.items():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            steps = run(cpu0 + seconds / rounds)
            totals[name][0] += steps
            totals[name][1] += time.process_time() - cpu0
            totals[name][2] += time.perf_counter() - wall0
    return {
        name: (steps * frames_per_step / cpu, steps * frames_per_step / wall)
        for name, (steps, cpu, wall) in totals.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU s per variant")
    parser.add_argument("--vector-seconds", type=float, default=10.0, help="CPU s per variant")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    args = parser.parse_args()

    os.sched_setaffinity(0, {args.core})
    cfg = EnvConfig()
    out = _compare(
        {
            "raw env.step (NES frames)": _raw_runner(cfg),
            "gymnasium chain": _single_runner(cfg, "gymnasium"),
            "fused": _single_runner(cfg, "fused"),
        },
        args.seconds,
        args.rounds,
        1,
    )
    for name, (cpu, wall) in out.items():
        fps = cpu if name.startswith("raw") else cpu * cfg.frame_skip
        wall_fps = wall if name.startswith("raw") else wall * cfg.frame_skip
        print(f"{name:>26}: {fps:7.0f} frames/CPU-s  ({wall_fps:7.0f} frames/wall-s)")
    print(f"fused vs gymnasium chain: {out['fused'][0] / out['gymnasium chain'][0] - 1:+.1%}")

    vec = _compare(
        {
            f"plain loop x{args.num_envs}": _plain_loop_runner(cfg, args.num_envs),
            f"SyncVectorEnv x{args.num_envs}": _vector_runner(cfg, args.num_envs),
        },
        args.vector_seconds,
        args.rounds,
        cfg.frame_skip,
    )
    for name, (cpu, wall) in vec.items():
        print(f"{name:>26}: {cpu:7.0f} env frames/CPU-s  ({wall:7.0f} /wall-s)")
    plain, vector = (v[0] for v in vec.values())
    print(f"SyncVectorEnv overhead: {1 - vector / plain:+.1%} of plain-loop throughput")
    us, frac = _vector_overhead_us(cfg, args.num_envs, args.vector_seconds)
    print(f"SyncVectorEnv.step CPU outside the envs: {us:.0f} us per vector step ({frac:.1%})")


if __name__ == "__main__":
    main()
