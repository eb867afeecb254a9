"""``python -m specedge.profile``: ``specedge profile`` (:mod:`specedge.analysis.profile`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("profile", sys.argv[1:])
