"""``python -m specedge.loadtest``: ``specedge loadtest`` (:mod:`specedge.commands.loadtest`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("loadtest", sys.argv[1:])
