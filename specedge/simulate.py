"""``python -m specedge.simulate``: ``specedge simulate`` (:mod:`specedge.analysis.simulate`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("simulate", sys.argv[1:])
