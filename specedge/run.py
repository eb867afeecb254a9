"""``python -m specedge.run``: ``specedge run`` (:mod:`specedge.commands.run`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("run", sys.argv[1:])
