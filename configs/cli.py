"""Command-line flags generated from the config schema.

Run by: the launcher and the ``python -m learner`` entry point.
Owns: turning every schema field into a ``--section.field VALUE`` flag (with its documentation
as help text) and folding the parsed flags back into a validated :class:`Config`.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from configs import schema

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "mario-1-1.toml"
"""The default preset: the 1-1 preset itself (one set of defaults, not a copy)."""


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and one ``--section.field VALUE`` flag per schema field.

    Values use TOML syntax (``--learner.learning_rate 3e-4``, ``--env.id CartPole-v1``,
    ``--run.total_env_frames 1_000_000``); they are validated like the file's values. Each
    field can also be set by an environment variable (:func:`env_var`), for containers.
    """
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML config file (default: {DEFAULT_CONFIG.relative_to(CONFIG_DIR.parent)}).",
    )
    group = parser.add_argument_group("config overrides (any schema field)")
    for dotted, field, typ in schema.iter_fields():
        meta = field.metadata
        extra = f" One of: {', '.join(meta['choices'])}." if meta.get("choices") else ""
        group.add_argument(
            f"--{dotted}",
            dest=f"override:{dotted}",
            metavar=getattr(typ, "__name__", "VALUE").upper(),
            default=None,
            # argparse %-formats help strings, so a literal % must be doubled
            help=f"{meta['doc']}{extra} [default: {field.default!r}]".replace("%", "%%"),
        )


ENV_PREFIX = "MARIO_"


def env_var(dotted: str) -> str:
    """The environment variable that sets a field: ``network.trajectory_endpoint`` ->
    ``MARIO_NETWORK__TRAJECTORY_ENDPOINT``."""
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Config values set through environment variables (for containers), parsed as TOML.

    Raises:
        schema.ConfigError: a ``MARIO_SECTION__FIELD`` variable (a ``MARIO_`` name with ``__``)
            names no config field, so a misspelt one is never silently ignored; the message
            names the variable and the closest real one. ``MARIO_`` names without ``__`` are
            the processes' own settings (``MARIO_LEARNER``, ``MARIO_CURVE_CERT``...) and are
            left alone.
    """
    known = {env_var(dotted): dotted for dotted, _, _ in schema.iter_fields()}
    out: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        dotted = known.get(name)
        if dotted is None:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise schema.ConfigError(f"{name}: no config field has this variable{hint}")
        out[dotted] = schema.parse_override(dotted, text)
    return out


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Overrides from ``MARIO_SECTION__FIELD`` environment variables, then from the
    ``--section.field`` flags (which win), parsed as TOML values."""
    out = env_overrides(os.environ)
    for key, text in vars(args).items():
        if key.startswith("override:") and text is not None:
            dotted = key.removeprefix("override:")
            out[dotted] = schema.parse_override(dotted, text)
    return out


def config_from_args(
    args: argparse.Namespace, fallback: Path | None = DEFAULT_CONFIG
) -> schema.Config:
    """Load ``--config`` (or ``fallback``) and apply the overrides.

    Raises:
        schema.ConfigError: naming the field for any invalid value or unknown key.
    """
    path = args.config if args.config is not None else fallback
    return schema.load(path, overrides_from_args(args))
