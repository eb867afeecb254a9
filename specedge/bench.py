"""``python -m specedge.bench``: ``specedge bench`` (:mod:`specedge.commands.bench`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("bench", sys.argv[1:])
