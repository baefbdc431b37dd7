"""An optional Weights & Biases mirror of a run: its config, its scalars and its eval videos.

Run by: the learner process, when ``run.wandb_project`` is set (:class:`learner.reporting.
Reporter` owns one). Owns: the one W&B run of a training run. Needs the ``wandb`` extra
(``uv sync --extra wandb`` or ``pip install wandb``), so the default install stays lean.

What goes there:

- the resolved config (``wandb.init(config=...)``), once;
- every ``metrics.jsonl`` line (:mod:`learner.metrics_log`), with ``env_frames`` as the x axis
  (``wandb.define_metric(..., step_metric="env_frames")``), so curves from machines of
  different speeds line up;
- each eval GIF the eval actor writes to ``RUN_DIR/eval/videos/`` (``wandb.Video``), once.

``run.wandb_mode`` is W&B's own ``mode``: ``online``, ``offline`` (files under
``RUN_DIR/wandb/``, to ``wandb sync`` later; what the tests use, with no network) or
``disabled``; the ``WANDB_MODE`` environment variable overrides it, as in W&B.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from configs import schema

log = logging.getLogger("learner")

VIDEO_DIR = Path("eval") / "videos"
"""Where, under the run directory, the eval actor writes its GIFs for the mirror."""


class WandbMirror:
    """The W&B run mirroring one training run.

    Args:
        config: the resolved run config (its ``run.wandb_*`` fields say where).
        run_dir: the run directory; W&B's files go to ``run_dir/wandb``, and the run's id is
            kept in ``run_dir/wandb_run_id`` so a resumed or restarted learner continues the
            same W&B run.

    Raises:
        schema.ConfigError: ``run.wandb_project`` is set but wandb is not installed.
    """

    def __init__(self, config: schema.Config, run_dir: Path) -> None:
        rc = config.run
        try:
            import wandb
        except ImportError as exc:
            raise schema.ConfigError(
                "run.wandb_project: needs the wandb package: uv sync --extra wandb "
                "(or pip install wandb)"
            ) from exc
        self._wandb = wandb
        self.run_dir = run_dir
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=rc.wandb_project,
            entity=rc.wandb_entity or None,
            mode=os.environ.get("WANDB_MODE", rc.wandb_mode),
            dir=str(run_dir),
            name=run_dir.name,
            id=run_id,
            resume="allow",
            config=schema.to_dict(config),
        )
        self.run.define_metric("env_frames")
        self.run.define_metric("*", step_metric="env_frames")
        self._videos_seen: set[Path] = set()
        log.info("mirroring to W&B project %s (run %s)", rc.wandb_project, run_id)

    def log(self, record: dict[str, Any]) -> None:
        """Mirror one metrics line (nulls left out) and any eval video not mirrored yet."""
        data: dict[str, Any] = {k: v for k, v in record.items() if v is not None}
        folder = self.run_dir / VIDEO_DIR
        if folder.is_dir():
            for path in sorted(folder.glob("*.gif")):
                if path not in self._videos_seen:
                    self._videos_seen.add(path)
                    # <stage>-v<policy version>.gif, from the eval actor
                    stage = path.stem.rsplit("-v", 1)[0]
                    data[f"eval/{stage}/video"] = self._wandb.Video(str(path), format="gif")
        self.run.log(data)

    def close(self) -> None:
        self.run.finish()
