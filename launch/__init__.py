"""The launcher's parts: process supervision and the progress line (``launcher.py`` runs them)."""
