"""``launcher.py keys``: create CURVE certificates for the learner and its actor machines.

Run by: an operator, once per deployment (again with ``--client NAME`` to add a machine).
Owns the command line around :func:`protocol.security.create_keys` and the instructions on
which file goes where.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from protocol.security import LOCAL_CLIENT, create_keys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="launcher.py keys", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("keys"),
        help="where the certificates go [default: %(default)s]",
    )
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="a client certificate to create and allow-list (repeatable); "
        f"'{LOCAL_CLIENT}' is always made for the launcher's own processes",
    )
    args = parser.parse_args(argv)
    names = [LOCAL_CLIENT, *[n for n in args.client if n != LOCAL_CLIENT]]
    for name in names:
        if not name.replace("-", "").replace("_", "").isalnum():
            parser.error(f"--client: {name!r} must be letters, digits, '-' or '_'")
    written = create_keys(args.dir, names)
    console = Console()
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    console.print(
        f"\nlearner machine: keep {args.dir}/ and run with --security.curve true "
        f"--security.keys_dir {args.dir}\n"
        f"actor machine NAME: copy {args.dir}/learner.key and {args.dir}/clients/NAME.key_secret "
        "to it and set MARIO_CURVE_SERVER and MARIO_CURVE_CERT to those two files "
        "(launcher.py --actors-only does this from --security.keys_dir and "
        "--security.client_name)",
        highlight=False,
    )
    return 0
