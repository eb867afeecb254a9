"""``python -m specedge.roofline``: the public name of :mod:`specedge.base.roofline`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("specedge.base.roofline", run_name="__main__", alter_sys=True)
