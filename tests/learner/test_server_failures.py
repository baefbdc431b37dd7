"""Failures a restart cannot fix end the learner with a distinct status and one line."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest
import zmq

from learner.server import VERSION_FILE, LearnerServer, serve
from protocol.exit_status import ExitStatus, PermanentFailure, is_permanent
from tests.learner.builders import server_config


def test_a_taken_address_is_a_bind_failure_naming_it(tmp_path: Path) -> None:
    blocker = zmq.Context.instance().socket(zmq.ROUTER)
    port = blocker.bind_to_random_port("tcp://127.0.0.1")  # ipc binds replace a taken path
    config = server_config(tmp_path, network__broadcast_endpoint=f"tcp://127.0.0.1:{port}")
    try:
        (tmp_path / "run").mkdir()
        with pytest.raises(PermanentFailure) as info:
            LearnerServer(config, tmp_path / "run")
    finally:
        blocker.close(0)
    assert info.value.status == ExitStatus.BIND and is_permanent(info.value.status)
    assert f"cannot bind tcp://127.0.0.1:{port}: Address already in use" in str(info.value)
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))  # no empty events file


def test_a_corrupt_version_file_is_a_corrupt_run_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / VERSION_FILE).write_text("9223372036854775808")  # 2^63: no int64 holds it
    with caplog.at_level(logging.ERROR):
        status = serve(server_config(tmp_path), run_dir, None)
    assert status == ExitStatus.CORRUPT_RUN_DIR
    assert f"{run_dir / VERSION_FILE}: '9223372036854775808' is not a policy version" in (
        caplog.records[-1].getMessage()
    )


def test_a_full_disk_stops_with_no_space_and_keeps_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def full(self: LearnerServer) -> None:
        self.learner.updates = 3
        self.publish_weights()  # its version-file write meets the full disk

    monkeypatch.setattr(LearnerServer, "run", full)
    original = Path.write_text

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.endswith(".tmp"):
            self.touch()
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    with caplog.at_level(logging.ERROR):
        status = serve(server_config(tmp_path), run_dir, None)
    assert status == ExitStatus.NO_SPACE
    assert "no space left" in caplog.records[-1].getMessage()
    assert not list(run_dir.glob("*.tmp"))


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, ExitStatus.CONFIG), (errno.ENOSPC, ExitStatus.NO_SPACE)],
)
def test_a_run_directory_that_cannot_be_written_stops_the_launcher_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: int | None,
    status: ExitStatus,
) -> None:
    """The launcher and the learner read a write failure of the run directory the same way:
    a path it cannot create is CONFIG, a full disk NO_SPACE (issue 14)."""
    import launcher
    from configs import schema

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run_dir = blocker / "run"  # under a regular file: no mkdir can make it, even as root
    if error is not None:
        run_dir = tmp_path / "run"

        def full(*_args: object, **_kwargs: object) -> None:
            raise OSError(error, "No space left on device")

        monkeypatch.setattr(schema, "save", full)
    code = launcher.main(["--config", "configs/smoke.toml", "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert code == status, out
    assert f"--run-dir {run_dir.resolve()}: cannot write the run directory" in " ".join(out.split())
    assert "Traceback" not in out
