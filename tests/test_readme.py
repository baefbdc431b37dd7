"""The README's test references: every ``file.py::test_name`` it cites exists."""

from __future__ import annotations

import re

from tests.conftest import ROOT

#: `dir/test_x.py::test_name` (or `::test_name`, the previous file's) inside one table row
REFERENCE = re.compile(r"`((?:[\w/]+\.py)?)::(\w+)`")
FILE = re.compile(r"`([\w/]+/test_\w+\.py)")


def test_every_test_the_readme_cites_exists() -> None:
    cited = 0
    for line in (ROOT / "README.md").read_text().splitlines():
        current = ""
        for match in re.finditer(rf"{REFERENCE.pattern}|{FILE.pattern}", line):
            path = match.group(1) or match.group(3)
            if path:
                current = path.removeprefix("tests/")
                assert (ROOT / "tests" / current).is_file(), f"README cites {path}: no file"
            name = match.group(2)
            if name:
                assert current, f"README cites ::{name} with no file before it: {line[:80]}"
                source = (ROOT / "tests" / current).read_text()
                assert re.search(rf"^def {name}\(", source, re.M), f"no {current}::{name}"
                cited += 1
    assert cited >= 20  # the "Faults and security" table cites its tests
