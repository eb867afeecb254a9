"""``python -m specedge.profile``: the public name of :mod:`specedge.analysis.profile`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.analysis.profile", run_name="__main__", alter_sys=True)
