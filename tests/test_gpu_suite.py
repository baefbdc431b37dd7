"""bench.gpu_suite's planning and its child handling (the suite itself needs minutes; its CPU
run is in the README's "Performance" section)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from bench import gpu_suite
from bench.gpu_suite import Step

CPU = {"device": "cpu", "bf16": True, "cpu_count": 2}
GPU = {"device": "cuda", "bf16": True, "cpu_count": 16}


def test_a_cpu_measures_the_eager_fp32_variants_and_says_why_it_skips_the_rest() -> None:
    steps = gpu_suite.learner_steps(CPU)
    assert len(steps) == 8 and len({s.name for s in steps}) == 8
    measured = [s.name for s in steps if not s.result]
    assert measured == ["learner-impala-fp32-eager", "learner-nature-fp32-eager"]
    assert all("GPU only" in s.result["skipped"] for s in steps if s.result)
    on_gpu = gpu_suite.learner_steps(GPU)
    assert on_gpu[0].name == "learner-impala-bf16-eager"  # the headline first
    assert not any(s.result for s in on_gpu)
    no_bf16 = gpu_suite.learner_steps({**GPU, "bf16": False})
    assert sum("no native bf16" in s.result.get("skipped", "") for s in no_bf16) == 4


def test_the_learner_group_is_one_child_and_each_variant_gets_its_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Step] = []

    def fake_run(step: Step, timeout: float) -> dict[str, Any]:
        calls.append(step)
        # the child was stopped after its first variant's line
        return {"lines": [{"variant": "impala:off:eager", "frames_per_s": 5.0}],
                "error": "timed out after 9 s", "tail": "..."}  # fmt: skip

    monkeypatch.setattr(gpu_suite, "run_step", fake_run)
    steps = gpu_suite.learner_steps(CPU)
    gpu_suite.run_learner_group(steps, fake_actors=1, share=60.0)
    assert len(calls) == 1
    argv = calls[0].argv
    assert argv[argv.index("--variants") + 1] == "impala:off:eager,nature:off:eager"
    by_name = {s.name: s.result for s in steps}
    assert by_name["learner-impala-fp32-eager"]["lines"][0]["frames_per_s"] == 5.0
    assert "timed out" in by_name["learner-nature-fp32-eager"]["error"]
    assert gpu_suite.headline(steps)["learner_over_sockets"] == {
        "learner-impala-fp32-eager": {
            "frames_per_s": 5.0, "vs_in_process": None, "gpu_utilization_mean": None
        }
    }  # fmt: skip


def test_a_step_that_outlasts_its_time_is_stopped_with_everything_it_started(tmp_path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # a child that starts a long-lived grandchild, then hangs
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('{{\"ok\": 1}}', flush=True); "
        "time.sleep(600)"
    )
    result = gpu_suite.run_step(Step("hang", ["-c", code]), timeout=5.0)
    assert result["error"] == "timed out after 5 s"
    assert '{"ok": 1}' in result["tail"]
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # reaped by init once killed; give it a moment
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the grandchild {grandchild} outlived its step")


def test_a_step_that_fails_keeps_its_output() -> None:
    result = gpu_suite.run_step(Step("fail", ["-c", "import sys; print('boom'); sys.exit(3)"]), 30)
    assert result["error"] == "exit status 3, no JSON line" and "boom" in result["tail"]
