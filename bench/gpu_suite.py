"""The prepared benchmark suite for a GPU machine: one command, a time budget, a JSON per step.

Run: ``python -m bench.gpu_suite --out DIR [--budget-s 480] [--actors 15]``. On the GPU host
(Python 3.12, its own CUDA torch, no registry) install the staged wheels first, as
``../shared/gpu-host/stage-wheels.sh`` says; the README's "Performance" section gives the whole
command.

Steps, in order, each a child process with a timeout of its share of the budget (what is left
when the budget runs short), each writing ``DIR/NN-<step>.json``:

1. ``device``: Python, torch and CUDA versions, the device name, CPU count.
2. ``learner-<torso>-<precision>-<compile>``: :mod:`bench.learner_throughput` over sockets
   (``--actors`` fake actors, capped at CPU count - 2) for the Nature and IMPALA torsos, fp32
   and bf16, ``torch.compile`` off and on, all in one child (``--variants``, start-up paid
   once; eager variants first, IMPALA bf16 first of all): 55% of what the learn step leaves.
   Skipped, and saying why: bf16 where the device has no native bf16; on a CPU device, compile
   and bf16 (inductor's C++ build alone outlasts a step's share there, and the CPU check only
   proves that the suite runs).
3. ``scaling``: :mod:`bench.scaling` with 1, 2, 4, 8 and ``--actors`` real Mario actors (counts
   above the CPU count less one are dropped): the other 45%.
4. ``learn``: :mod:`bench.learn` on the 1-1 preset with ``--actors`` actors for the time that is
   left (30% of the budget and at least 60 s are kept for it), with a short final eval (1
   greedy and 1 sampled episode below a 300 s budget, else 2) and baselines of as many.

A step that fails or runs out of time still writes its JSON, with ``error`` (and the tail of its
output), and the suite goes on. ``DIR/summary.json`` (also printed as one JSON line) holds the
device, per-step status and seconds, and the headline figures: learner env frames/s over sockets
per variant, the scaling ratio per actor count and the last ``bench.learn`` line.

Run by: a person (or CI's CPU check) on the machine measured. Owns its child processes and DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRESET = "configs/mario-1-1.toml"
SCALING_COUNTS = (1, 2, 4, 8)
LEARN_SHARE, LEARN_MIN_S = 0.3, 60.0
LEARNER_SHARE = 0.55
"""Of what the learn step leaves; scaling gets the rest."""
STARTUP_S = 15.0
"""Seconds a child needs before it measures anything (imports, building the model, spawning)."""
PER_VARIANT_S, COMPILE_S = 8.0, 30.0
"""Seconds a learner variant costs beside its two windows, and a compile beside that."""


@dataclass
class Step:
    """One step of the suite: a child command, its weight within its group, and its result."""

    name: str
    argv: list[str]
    weight: float = 1.0
    result: dict[str, Any] = field(default_factory=dict)
    variant: str = ""


def device_info() -> dict[str, Any]:
    """What the suite runs on (torch imported here only)."""
    import torch

    from models.actor_critic import cpu_has_native_bf16

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "bf16": bool(torch.cuda.is_bf16_supported()) if cuda else cpu_has_native_bf16(),
        "cpu_count": os.cpu_count() or 1,
    }


VARIANT_ORDER = (
    ("impala", "bf16", False), ("impala", "off", False), ("nature", "bf16", False),
    ("nature", "off", False), ("impala", "bf16", True), ("impala", "off", True),
    ("nature", "bf16", True), ("nature", "off", True),
)  # fmt: skip
"""Eager variants first, IMPALA bf16 (the headline) first of all: a group cut short by its
budget loses the compile variants, whose compile time is the least predictable."""


def learner_steps(info: dict[str, Any]) -> list[Step]:
    """One step per learner variant (:data:`VARIANT_ORDER`); the skipped ones say why. The
    steps share one child process (:func:`run_learner_group`), so their ``argv`` is empty."""
    steps = []
    for torso, amp, compiled in VARIANT_ORDER:
        precision = "fp32" if amp == "off" else amp
        name = f"learner-{torso}-{precision}-{'compile' if compiled else 'eager'}"
        step = Step(name, [], weight=2.0 if compiled else 1.0)
        step.variant = f"{torso}:{amp}:{'compile' if compiled else 'eager'}"
        if amp == "bf16" and not info["bf16"]:
            step.result = {"skipped": f"no native bf16 on this {info['device']}"}
        elif info["device"] == "cpu" and (compiled or amp != "off"):
            step.result = {"skipped": "compile and bf16 are measured on a GPU only"}
        steps.append(step)
    return steps


def run_learner_group(steps: list[Step], fake_actors: int, share: float) -> None:
    """Measure every variant not skipped in one :mod:`bench.learner_throughput` child
    (``--variants``), so start-up is paid once, within ``share`` seconds; fills each step's
    result with its JSON line, or the error that kept it from one."""
    todo = [step for step in steps if not step.result]
    if not todo:
        return
    # per variant: a model, the fake actors' spawn, the warm-ups and the server's stop;
    # compiling costs more again
    overhead = STARTUP_S + sum(PER_VARIANT_S + COMPILE_S * (step.weight > 1) for step in todo)
    window = max(1.0, (share - overhead) / (2 * len(todo)))  # in process, then over sockets
    group = Step("learner-group", [
        "-m", "bench.learner_throughput", "--config", PRESET, "--seconds", f"{window:.1f}",
        "--actors", str(fake_actors), "--warmup", "2",
        "--variants", ",".join(step.variant for step in todo),
    ])  # fmt: skip
    result = run_step(group, share)
    lines = {line.get("variant"): line for line in result.get("lines") or []}
    for step in todo:
        if step.variant in lines:
            step.result = {"lines": [lines[step.variant]], "window_s": window}
        else:
            step.result = {
                "error": f"not measured: the learner group's child stopped first "
                f"({result.get('error', 'no line for this variant')})",
                "tail": result.get("tail", ""),
            }


def run_step(step: Step, timeout: float) -> dict[str, Any]:
    """Run ``step``'s child for at most ``timeout`` seconds; its JSON lines, or an error.

    The child runs in a process group of its own, and the whole group is stopped (SIGTERM, then
    SIGKILL) when it outlasts ``timeout``, so the learners and actors a benchmark starts never
    outlive their step.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *step.argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGTERM)  # benchmarks stop their children on SIGTERM
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        _signal_group(proc.pid, signal.SIGKILL)  # whatever is left of the group
        return {"error": f"timed out after {timeout:.0f} s", "tail": (out + err)[-2000:],
                "seconds": round(time.monotonic() - start, 1)}  # fmt: skip
    _signal_group(proc.pid, signal.SIGKILL)  # anything the child left running in its group
    lines = []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    result: dict[str, Any] = {"lines": lines, "seconds": round(time.monotonic() - start, 1)}
    if proc.returncode != 0 or not lines:
        result["error"] = f"exit status {proc.returncode}" + ("" if lines else ", no JSON line")
        result["tail"] = (out + err)[-2000:]
    return result


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone
        os.killpg(pgid, sig)


def headline(steps: list[Step]) -> dict[str, Any]:
    """The summary's figures from the steps' results."""
    learner: dict[str, Any] = {}
    scaling: dict[str, Any] = {}
    learn: dict[str, Any] | None = None
    for step in steps:
        lines = step.result.get("lines") or []
        if step.name.startswith("learner-") and lines:
            last = lines[-1]
            learner[step.name] = {
                "frames_per_s": last.get("frames_per_s"),
                "vs_in_process": last.get("vs_in_process"),
                "gpu_utilization_mean": last.get("gpu_utilization_mean"),
            }
        elif step.name == "scaling":
            for line in lines:
                scaling[str(line.get("actors"))] = {
                    "env_fps": line.get("env_fps"),
                    "scaling_ratio": line.get("scaling_ratio"),
                }
        elif step.name == "learn" and lines:
            learn = lines[-1]
    return {"learner_over_sockets": learner, "scaling": scaling, "learn": learn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_suite", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for the JSON files")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall clock for it all")
    parser.add_argument("--actors", type=int, default=15, help="actors for scaling and learn")
    args = parser.parse_args(argv)
    if args.budget_s < 60:
        parser.error(f"--budget-s: must be >= 60, got {args.budget_s}")
    if args.actors < 1:
        parser.error(f"--actors: must be >= 1, got {args.actors}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out: cannot create {args.out}: {exc.strerror}")
    start = time.monotonic()
    deadline = start + args.budget_s
    info = device_info()
    files = [_write(args.out, 0, "device", info)]

    learn_reserve = max(LEARN_SHARE * args.budget_s, LEARN_MIN_S)
    rest = max(0.0, args.budget_s - learn_reserve)
    cpus = info["cpu_count"]
    variants = learner_steps(info)
    run_learner_group(variants, max(1, min(args.actors, cpus - 2)), rest * LEARNER_SHARE)
    for index, step in enumerate(variants, start=1):
        files.append(_write(args.out, index, step.name, step.result))
    counts = sorted({n for n in (*SCALING_COUNTS, args.actors) if n <= max(1, cpus - 1)})
    scaling_share = min(rest * (1 - LEARNER_SHARE), deadline - time.monotonic() - learn_reserve)
    per_count = max(0.0, scaling_share - STARTUP_S) / len(counts)
    scaling_window = max(2.0, per_count * 0.5)  # each count also starts its processes
    scaling = Step("scaling", ["-m", "bench.scaling", "--config", PRESET,
                               "--actors", ",".join(map(str, counts)),
                               "--seconds", f"{scaling_window:.1f}",
                               "--warmup", f"{max(1.0, scaling_window / 3):.1f}"])  # fmt: skip
    scaling.result = run_step(scaling, max(1.0, scaling_share))
    steps = [*variants, scaling]
    files.append(_write(args.out, len(steps), "scaling", scaling.result))
    left = deadline - time.monotonic()
    learn_actors = max(1, min(args.actors, cpus - 1))
    episodes = "1" if args.budget_s < 300 else "2"
    # what is not training: the launcher's start, then the eval and the baselines
    minutes = max(0.25, (left - 2 * STARTUP_S - 20.0) / 60.0)
    learn = Step("learn", ["-m", "bench.learn", "--config", PRESET, "--minutes", f"{minutes:.2f}",
                           "--eval-episodes", episodes, "--baseline-episodes", episodes,
                           "--run-dir", str((args.out / "learn-run").resolve()), "--",
                           "--run.num_actors", str(learn_actors)])  # fmt: skip
    if left > STARTUP_S:
        learn.result = run_step(learn, left)
    else:
        learn.result = {"skipped": f"{left:.0f} s of the budget left"}
    steps.append(learn)
    files.append(_write(args.out, len(steps), "learn", learn.result))
    summary = {
        "device": info,
        "budget_s": args.budget_s,
        "seconds": round(time.monotonic() - start, 1),
        "steps": {s.name: _status(s.result) for s in steps},
        **headline(steps),
        "files": files,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


def _status(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return "skipped"
    return "error" if "error" in result else "ok"


def _write(out: Path, index: int, name: str, result: dict[str, Any]) -> str:
    path = out / f"{index:02d}-{name}.json"
    path.write_text(json.dumps({"step": name, **result}, indent=1))
    return path.name


if __name__ == "__main__":
    sys.exit(main())
