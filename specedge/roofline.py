"""``python -m specedge.roofline``: ``specedge roofline`` (:mod:`specedge.base.roofline`)."""

import sys

from specedge.__main__ import forward

if __name__ == "__main__":
    forward("roofline", sys.argv[1:])
