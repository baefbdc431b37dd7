"""Hyperparameter search over real training runs (``launcher.py tune``)."""
