"""requirements.txt, the pip path, against pyproject.toml and uv.lock.

Covers: every ``[project].dependencies`` entry is pinned in requirements.txt at a version its
specifier allows; every pin is the version uv.lock holds (so a lock update without a fresh
``uv export`` fails here); and no dev-only dependency leaks in. Regenerate with
``uv export --format requirements-txt --no-hashes --no-dev --frozen -o requirements.txt``.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, Requirement]:
    """requirements.txt's requirements by canonical name (comments and annotations skipped)."""
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        out[canonicalize_name(req.name)] = req
    assert out, "requirements.txt pins nothing"
    return out


def pinned_version(req: Requirement) -> Version:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req.name} is not pinned with =="
    return Version(spec.version)


def test_every_project_dependency_is_pinned() -> None:
    pinned = pins()
    for dep in PYPROJECT["project"]["dependencies"]:
        want = Requirement(dep)
        name = canonicalize_name(want.name)
        assert name in pinned, f"{want.name} is missing from requirements.txt: run uv export"
        assert pinned[name].marker is None, f"{want.name} is pinned for some platforms only"
        version = pinned_version(pinned[name])
        assert want.specifier.contains(version, prereleases=True), f"{want.name}=={version}"


def test_pins_are_the_locked_versions() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked: dict[str, set[Version]] = defaultdict(set)
    for package in lock["package"]:
        if "version" in package:
            locked[canonicalize_name(package["name"])].add(Version(package["version"]))
    for name, req in pins().items():
        assert name in locked, f"{req.name} is not in uv.lock"
        assert pinned_version(req) in locked[name], f"{req.name}: re-run uv export"


def test_no_dev_dependency_is_pinned() -> None:
    dev = {canonicalize_name(Requirement(d).name) for d in PYPROJECT["dependency-groups"]["dev"]}
    assert not dev & set(pins())
