"""``python -m specedge.commands.bench``: ``specedge bench``."""

import sys

from specedge.commands.bench import main

if __name__ == "__main__":
    sys.exit(main())
