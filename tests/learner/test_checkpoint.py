"""Checkpoints: atomic write, keep-K, latest resolution, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from configs import schema
from learner.checkpoint import (
    CheckpointError,
    auto_resume,
    check_compatible,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    newest_loadable,
    resolve_resume,
    save_checkpoint,
)


def state(n: int) -> dict:
    return {"model": {"w": torch.full((2,), float(n))}, "counters": {"updates": n}}


def test_save_keeps_the_last_k_and_leaves_no_temp_files(tmp_path: Path) -> None:
    for n in range(5):
        save_checkpoint(state(n), checkpoint_path(tmp_path, n), keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt-000000003.pt", "ckpt-000000004.pt"]
    assert list((tmp_path / "checkpoints").glob(".*tmp")) == []
    loaded = load_checkpoint(latest_checkpoint(tmp_path))
    assert loaded["counters"]["updates"] == 4
    assert loaded["model"]["w"].tolist() == [4.0, 4.0]


def test_failed_write_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    save_checkpoint(state(1), checkpoint_path(tmp_path, 1), keep=3)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(state(2), checkpoint_path(tmp_path, 2), keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000001.pt"]
    assert list((tmp_path / "checkpoints").iterdir()) == [checkpoint_path(tmp_path, 1)]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(garbage)
    partial = tmp_path / "partial.pt"
    torch.save({"model": {}}, partial)
    with pytest.raises(CheckpointError, match="missing entry 'counters'"):
        load_checkpoint(partial)
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        latest_checkpoint(tmp_path)


def test_resolve_resume(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    save_checkpoint(state(7), checkpoint_path(run, 7), keep=3)
    save_checkpoint(state(9), checkpoint_path(run, 9), keep=3)
    assert resolve_resume("latest", run) == checkpoint_path(run, 9)
    assert resolve_resume("latest", None, runs_root=tmp_path / "runs") == checkpoint_path(run, 9)
    assert resolve_resume(str(run), None) == checkpoint_path(run, 9)
    assert resolve_resume(str(checkpoint_path(run, 7)), None) == checkpoint_path(run, 7)
    with pytest.raises(CheckpointError, match="--resume: checkpoint not found"):
        resolve_resume(str(tmp_path / "nope.pt"), None)
    with pytest.raises(CheckpointError, match="no run with checkpoints"):
        resolve_resume("latest", None, runs_root=tmp_path / "empty")


def test_auto_resume_starts_fresh_then_continues(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert auto_resume(run) is None  # no run directory yet: first start
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-000000003.pt.tmp").write_bytes(b"partial")
    assert auto_resume(run) is None  # an interrupted write is not a checkpoint
    save_checkpoint(state(3), checkpoint_path(run, 3), keep=3)
    save_checkpoint(state(5), checkpoint_path(run, 5), keep=3)
    assert auto_resume(run) == checkpoint_path(run, 5)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for n in (3, 5, 7):
        save_checkpoint(state(n), checkpoint_path(tmp_path, n), keep=3)
    newest = checkpoint_path(tmp_path, 7)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk
    torch.save({"model": {}}, checkpoint_path(tmp_path, 5))  # loads, but lacks its counters
    with caplog.at_level("WARNING"):
        assert newest_loadable(tmp_path) == checkpoint_path(tmp_path, 3)
        assert latest_checkpoint(tmp_path) == auto_resume(tmp_path) == checkpoint_path(tmp_path, 3)
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(newest) in m and "unreadable" in m for m in warned)
    assert any("ckpt-000000005.pt" in m and "missing entry 'counters'" in m for m in warned)
    assert not any("weights_only" in m for m in warned)  # never torch's unpickling advice
    checkpoint_path(tmp_path, 3).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        latest_checkpoint(tmp_path)
    assert newest_loadable(tmp_path) is None


def test_a_resume_must_keep_the_model_it_was_trained_with(tmp_path: Path) -> None:
    config = schema.load(None, {})
    saved = {"config": schema.to_dict(config)}
    check_compatible(saved, config, tmp_path / "c.pt")  # the same config: fine
    other_stage = schema.load(None, {"env.id": "SuperMarioBros-1-2-v0"})
    check_compatible(saved, other_stage, tmp_path / "c.pt")  # same shapes: fine
    for override, field in [
        ({"model.torso": "impala"}, "model.torso"),
        ({"env.actions": "complex"}, "env.actions"),
        ({"env.frame_stack": 2}, "env.frame_stack"),
        ({"env.id": "CartPole-v1"}, "env.id"),
    ]:
        with pytest.raises(CheckpointError, match=rf"{field}: .*c\.pt was trained with"):
            check_compatible(saved, schema.load(None, override), tmp_path / "c.pt")
    check_compatible({}, schema.load(None, {"model.torso": "impala"}), tmp_path / "c.pt")
