"""``python -m specedge.report``: the public name of :mod:`specedge.analysis.report`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.analysis.report", run_name="__main__", alter_sys=True)
