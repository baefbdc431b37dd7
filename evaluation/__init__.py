"""Evaluation: play checkpoints and baselines on stages, report, record videos.

Run by: ``launcher.py eval`` (:mod:`evaluation.cli`) and the eval actor process started beside
training (``python -m evaluation.actor --run-dir RUN_DIR``).
Owns: nothing at import time; see :mod:`evaluation.evaluate` (episodes and reports),
:mod:`evaluation.baselines` (policies), :mod:`evaluation.video` (MP4 / GIF) and
:mod:`evaluation.actor` (periodic evaluation during training).
"""
