"""``python -m specedge.report``: ``specedge report`` (:mod:`specedge.analysis.report`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("report", sys.argv[1:])
