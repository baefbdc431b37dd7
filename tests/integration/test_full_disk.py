"""A really full disk (issue 14, item 9), on real processes: the run directory is a small tmpfs
in a private mount namespace, filled by the test once the first checkpoint is on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.exit_status import ExitStatus
from tests.conftest import ROOT
from tests.integration.fleet import LONG_SMOKE

# Mount a tmpfs over $1 in this (private) mount namespace, then run the rest of the arguments.
MOUNT_THEN_RUN = 'mount -t tmpfs -o size=128m tmpfs "$1" && shift && exec "$@"'


@pytest.mark.slow
def test_a_really_full_disk_stops_the_run_at_once_with_one_line_and_keeps_the_checkpoint(
    tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir, report = tmp_path / "run", tmp_path / "report.json"
    run_dir.mkdir()
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", MOUNT_THEN_RUN, "sh",
         str(run_dir), sys.executable, "-m", "tests.fixtures.full_disk", str(run_dir),
         str(report), *LONG_SMOKE, *endpoints, "--run.checkpoint_interval_s", "3"],
        cwd=ROOT, check=True, timeout=480,
    )  # fmt: skip
    seen = json.loads(report.read_text())
    output = seen["output"]
    assert seen["filled_at_s"] is not None, output  # the disk was filled while the run trained
    assert seen["rc"] == ExitStatus.NO_SPACE, output
    assert "no space left on the run directory's disk" in output, output
    assert "Traceback" not in output, output
    assert "restarting" not in output, output  # a permanent failure: never retried
    assert seen["checkpoints"] and seen["newest_loads"], seen["files"]
    empty = [name for name, size in seen["files"].items() if size == 0]
    assert not empty, f"empty files left behind: {empty}"
    assert not [name for name in seen["files"] if name.endswith(".tmp")], seen["files"]
