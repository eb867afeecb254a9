"""``python -m specedge.bench``: the public name of :mod:`specedge.commands.bench`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.commands.bench", run_name="__main__", alter_sys=True)
