"""The README against the code: every ``file.py::test_name`` it cites exists, and its option
table names every config field with the schema's default."""

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


def option_rows() -> list[tuple[list[str], str]]:
    """(full field names, default cell) of each row of the README's option table. A row may
    name several fields: `env.reward_progress`, `_time` (the same prefix) or `max_abs_logit`
    (the same section) in its first cell or its text."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Configuration") : text.index("## Evaluation and videos")]
    rows = []
    for line in block.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        first = re.findall(r"`([a-z_]+)\.([a-z_0-9]+)`", cells[0])
        section, name = first[0]
        names = [f"{s}.{n}" for s, n in first]
        prefix = name.split("_")[0]
        names += [f"{section}.{prefix}{m}" for m in re.findall(r"`(_[a-z_]+)`", cells[0])]
        names += [f"{section}.{m}" for m in re.findall(r"`(max_abs_[a-z_]+)`", cells[-1])]
        rows.append((names, cells[1]))
    return rows


def same_default(shown: str, default: object) -> bool:
    shown = shown.strip("`")
    if isinstance(default, bool):
        return shown == str(default).lower()
    if isinstance(default, int | float):
        return float(shown.replace(",", "")) == float(default)
    if isinstance(default, tuple):
        return shown == "[]" and default == ()
    return shown in (str(default), f'""{default}') or (shown == '""' and default == "")


def test_the_option_table_names_every_field_with_its_default() -> None:
    import dataclasses

    from configs import schema

    defaults = {path: f.default for path, f, _ in schema.iter_fields()}
    named: set[str] = set()
    for names, shown in option_rows():
        unknown = [n for n in names if n not in defaults]
        assert not unknown, f"README option table: no such field {unknown}"
        named.update(names)
        if len(names) == 1 and defaults[names[0]] is not dataclasses.MISSING:
            assert same_default(shown, defaults[names[0]]), (
                f"README option table: {names[0]} defaults to {defaults[names[0]]!r}, not {shown}"
            )
    missing = sorted(set(defaults) - named)
    assert not missing, f"README option table lacks {missing}"
