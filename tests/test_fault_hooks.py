"""The test-only fault hooks patch a process only when asked, and production code reads none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import faults

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import learner.checkpoint as c, learner.learner as l; "
    "print(type(c.torch).__name__, l.Learner.apply.__qualname__)"
)


def probe(extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARIO_FAULT_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env={**env, **extra},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return out.stdout.strip()


def test_hooks_patch_only_the_faults_asked_for() -> None:
    assert probe(faults.env(checkpoint_delay_s=2)) == "_LingeringTorch Learner.apply"
    assert probe(faults.env(train_sleep_s=0.5)).endswith("_patch_learner.<locals>.apply")
    assert probe({}) == "module Learner.apply"  # no hook: nothing patched


def test_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="train_sleep: unknown fault"):
        faults.env(train_sleep=1)


def test_production_code_reads_no_fault_variable() -> None:
    for folder in ("actor", "learner", "envs", "evaluation", "launch", "protocol", "telemetry"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "MARIO_FAULT" not in path.read_text(), path
