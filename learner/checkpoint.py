"""Atomic checkpoints: write, keep the last K, find the latest, load with clear errors.

Run by: the learner process (save, resume) and the launcher (``--resume`` resolution, the
newest loadable checkpoint for a restart, and the model check before a resume starts).
Owns: the checkpoint file format and the guarantee that a checkpoint on disk is always complete:
it is written to a temp file in the same directory, fsynced, ``os.replace``d into place, and
the directory is fsynced, so a crash at any moment leaves the old or the new file, never half.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from configs import schema

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or lacks a required entry (named in the message)."""


def checkpoint_path(run_dir: Path, updates: int) -> Path:
    """``run_dir/checkpoints/ckpt-<updates, 9 digits>.pt``."""
    return run_dir / CHECKPOINT_DIR / f"ckpt-{updates:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints in ``run_dir``, oldest first (ordered by update count)."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def newest_loadable(
    run_dir: Path, required: tuple[str, ...] = ("model", "counters")
) -> Path | None:
    """The newest checkpoint of a run that loads (:func:`load_checkpoint`), or None.

    A newer file that does not load (truncated, corrupt, lacking an entry) is skipped with a
    warning naming it and why, so one bad file never strands a run whose older checkpoints are
    good. Each candidate is loaded once to check it.
    """
    for path in reversed(list_checkpoints(run_dir)):
        try:
            load_checkpoint(path, required)
        except CheckpointError as exc:
            log.warning("skipping checkpoint %s: %s", path, exc)
            continue
        return path
    return None


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest loadable checkpoint of a run (:func:`newest_loadable`).

    Raises:
        CheckpointError: the run has none, or none that loads.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {run_dir / CHECKPOINT_DIR}")
    path = newest_loadable(run_dir)
    if path is None:
        raise CheckpointError(
            f"no loadable checkpoint in {run_dir / CHECKPOINT_DIR} ({len(found)} found, "
            "none loads; the log names each and why)"
        )
    return path


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete temp files of checkpoint writes that were cut short (a crash mid-save)."""
    folder = run_dir / CHECKPOINT_DIR
    leftovers = sorted(folder.glob(".ckpt-*.tmp")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temp file in ``path``'s directory, fsync, rename, fsync the
    directory: ``path`` always holds the old or the new state, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(state: dict[str, Any], path: Path, keep: int) -> None:
    """Atomically write ``state`` (torch tensors and plain Python values) to ``path``.

    After the rename, the new file is loaded back to verify it before checkpoints beyond the
    newest ``keep`` are deleted, so a bad write never costs the previous good one.
    """
    atomic_save(state, path)
    load_checkpoint(path)
    for old in list_checkpoints(path.parent.parent)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(
    path: Path, required: tuple[str, ...] = ("model", "counters")
) -> dict[str, Any]:
    """Load a checkpoint onto the CPU.

    Uses ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary
    pickled objects.

    Raises:
        CheckpointError: the file is missing, unreadable, or lacks an entry in ``required``.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # not torch's own text: it advises weights_only=False, which would unpickle the file
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}): truncated, corrupt, or "
            "not a checkpoint of this project (they hold only tensors and plain values, and "
            "are never unpickled)"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict at the top level")
    for key in required:
        if key not in state:
            raise CheckpointError(f"checkpoint {path}: missing entry {key!r}")
    return state


def auto_resume(run_dir: Path) -> Path | None:
    """``--resume auto``: the newest complete checkpoint in ``run_dir``, or None to start fresh.

    For a process that a supervisor (Docker, Kubernetes) restarts with the same arguments: the
    first start trains from scratch, every later one continues the run.
    """
    return newest_loadable(run_dir)


def resolve_resume(
    spec: str, run_dir: Path | None, runs_root: Path = Path("runs"), flag: str = "--resume"
) -> Path:
    """Turn ``--resume PATH|latest`` into a checkpoint file.

    ``latest`` means the newest loadable checkpoint in ``run_dir``, or, without one, in the most
    recently modified run under ``runs_root``. A directory means its newest loadable checkpoint
    (:func:`newest_loadable`). ``flag`` names the option in error messages.

    Raises:
        CheckpointError: nothing matches.
    """
    if spec == "latest":
        if run_dir is None:
            runs = sorted(
                (p for p in runs_root.glob("*") if list_checkpoints(p)),
                key=lambda p: p.stat().st_mtime,
            )
            if not runs:
                raise CheckpointError(f"{flag} latest: no run with checkpoints in {runs_root}")
            run_dir = runs[-1]
        return _latest_for(flag, spec, run_dir)
    path = Path(spec)
    if path.is_dir():
        return _latest_for(flag, spec, path)
    if not path.is_file():
        raise CheckpointError(f"{flag}: checkpoint not found: {path}")
    return path


def _latest_for(flag: str, spec: str, run_dir: Path) -> Path:
    """:func:`latest_checkpoint` with an error that names the option and its value."""
    try:
        return latest_checkpoint(run_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"{flag} {spec}: {exc}") from exc


SHAPING_ENV_FIELDS = ("actions", "frame_stack", "resolution")
"""``env`` fields that set the model's input or output shape (with ``env.id`` off Mario)."""


def check_resume(path: Path, config: schema.Config) -> None:
    """Load the checkpoint a resume starts from and :func:`check_compatible` it with
    ``config``; for the launcher and the learner, before either writes ``config.toml``.

    Raises:
        CheckpointError: the file does not load, or lacks ``learner``/``counters``, or a
            model-shaping field differs (named).
    """
    check_compatible(load_checkpoint(path, ("learner", "counters")), config, path)


def check_compatible(state: dict[str, Any], config: schema.Config, path: Path) -> None:
    """Check, before anything is written or started, that ``config`` builds the model the
    checkpoint ``state`` holds: every ``model`` field and the ``env`` fields that set its
    shapes must equal those of the config it was trained with (``state["config"]``; a
    checkpoint without one is not checked).

    Raises:
        CheckpointError: naming the first field that differs, both values and the file.
    """
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    new = schema.to_dict(config)
    fields = [("model", key) for key in new["model"]]
    fields += [("env", key) for key in SHAPING_ENV_FIELDS]
    ids = (str(saved.get("env", {}).get("id", "")), config.env.id)
    if not all(i.startswith("SuperMarioBros") for i in ids):
        fields.append(("env", "id"))
    for section, key in fields:
        old = saved.get(section, {}).get(key, new[section][key])
        if old != new[section][key]:
            raise CheckpointError(
                f"{section}.{key}: {path} was trained with {old!r}, this config has "
                f"{new[section][key]!r}; a resumed run keeps the model it was trained with "
                "(drop the override, or start a new run)"
            )
