"""``python -m specedge.simulate``: the public name of :mod:`specedge.analysis.simulate`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.analysis.simulate", run_name="__main__", alter_sys=True)
