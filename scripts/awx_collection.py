# SPDX-License-Identifier: GPL-3.0-or-later
"""Put the awx.awx collection where tests/integration/test_awx_env.py reads its modules' documentation.

The awx.awx collection comes from the ``ansible`` community package on PyPI (a pinned wheel, checked
against its sha256). Only ``ansible_collections/awx/awx/`` is extracted, into
``.cache/awx-collection/``: the package itself is never installed, since it needs another ansible-core
than the development environment's. Runs ``pip download`` with the interpreter running this script
(``make awx-collection`` uses the virtual environment's), so pip's own settings (PIP_INDEX_URL,
PIP_FIND_LINKS, PIP_NO_INDEX ...) apply. Does nothing, quietly, when the collection is already there.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "ansible"
VERSION = "10.7.0"  # ships awx.awx 24.6.1
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
SHA256 = "0089f08e047ceb70edd011be009f5c6273add613fbe491e9697c0556c989d8ea"
PREFIX = "ansible_collections/awx/awx/"

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "awx-collection"
# Written last: its content names the wheel the tree came from, so a changed pin fetches again.
MARKER = CACHE / "installed-from"


class FetchError(Exception):
    """The wheel could not be downloaded, or is not the one pinned here."""


def _download(directory: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies, no source distribution) into ``directory``."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary", ":all:", "--dest", str(directory), f"{PACKAGE}=={VERSION}"]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"pip download {PACKAGE}=={VERSION} failed:\n{result.stdout}{result.stderr}")
    wheel = directory / WHEEL
    if not wheel.is_file():
        raise FetchError(f"pip download {PACKAGE}=={VERSION} did not produce {WHEEL}: {sorted(p.name for p in directory.iterdir())}")
    return wheel


def _verify(wheel: Path) -> None:
    digest = hashlib.sha256()
    with wheel.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != SHA256:
        raise FetchError(f"{wheel.name} has sha256 {digest.hexdigest()}, expected {SHA256}: not the pinned wheel")


def _extract(wheel: Path, target: Path) -> int:
    """Extract the members under ``PREFIX`` into ``target``; return how many files."""
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if not member.filename.startswith(PREFIX) or member.is_dir():
                continue
            # A wheel's names are relative; refuse anything that would land outside the target.
            if ".." in Path(member.filename).parts or Path(member.filename).is_absolute():
                raise FetchError(f"{wheel.name}: unsafe member name {member.filename!r}")
            archive.extract(member, target)
            count += 1
    if count == 0:
        raise FetchError(f"{wheel.name} has nothing under {PREFIX}")
    return count


def main() -> int:
    """Fetch, verify and extract unless the marker says this wheel's collection is already in place."""
    collection = CACHE / PREFIX
    if MARKER.is_file() and MARKER.read_text().strip() == f"{WHEEL} {SHA256}" and (collection / "MANIFEST.json").is_file():
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    # Download and extract beside the cache, then move into place: an interrupted run leaves no half tree.
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="fetch-") as scratch:
        work = Path(scratch)
        try:
            wheel = _download(work / "download")
            _verify(wheel)
            count = _extract(wheel, work / "tree")
        except FetchError as error:
            print(f"awx.awx collection: {error}", file=sys.stderr)
            return 1
        MARKER.unlink(missing_ok=True)
        shutil.rmtree(CACHE / "ansible_collections", ignore_errors=True)
        (work / "tree" / "ansible_collections").rename(CACHE / "ansible_collections")
        MARKER.write_text(f"{WHEEL} {SHA256}\n")
    print(f"awx.awx collection: {count} files from {WHEEL} in {CACHE.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
