"""``python -m evaluation ...``: the same command as ``launcher.py eval ...``.

Run by: the user. Owns nothing beyond handing ``sys.argv`` to :func:`evaluation.cli.main`.
"""

from __future__ import annotations

import sys

from evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
