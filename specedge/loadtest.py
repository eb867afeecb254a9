"""``python -m specedge.loadtest``: the public name of :mod:`specedge.commands.loadtest`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.commands.loadtest", run_name="__main__", alter_sys=True)
