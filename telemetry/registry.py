"""Where ``launcher.py monitor`` finds learners started by ``launcher.py`` on this machine.

Run by: the launcher (registers its run while it supervises one) and the monitor (looks up the
newest live run). Owns one small JSON file per launcher process in a per-user directory
(``$XDG_RUNTIME_DIR/mario-impala`` or ``/tmp/mario-impala-<uid>``); entries whose process is
gone are ignored and removed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def registry_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "mario-impala"
    return Path(tempfile.gettempdir()) / f"mario-impala-{os.getuid()}"


def register(broadcast_endpoint: str, run_dir: Path, directory: Path | None = None) -> Path:
    """Record this process's run; returns the entry's path (remove it with :func:`unregister`)."""
    folder = directory or registry_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{os.getpid()}.json"
    entry = {
        "pid": os.getpid(),
        "broadcast_endpoint": broadcast_endpoint,
        "run_dir": str(run_dir),
        "started": time.time(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_runs(directory: Path | None = None) -> list[dict[str, Any]]:
    """Registered runs whose launcher is still running, newest first."""
    folder = directory or registry_dir()
    runs = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
            pid = int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            runs.append(entry)
        else:
            path.unlink(missing_ok=True)
    return sorted(runs, key=lambda e: e.get("started", 0), reverse=True)
