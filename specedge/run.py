"""``python -m specedge.run``: the public name of :mod:`specedge.commands.run`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.commands.run", run_name="__main__", alter_sys=True)
