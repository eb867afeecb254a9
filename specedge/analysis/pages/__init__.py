"""The HTML reports' pages, one per kind: ``page`` (rendering a page of sections: figures as
embedded PNGs, tables, the template), ``comparison`` (runs side by side), ``sweep`` (a Hydra
multirun), ``projection`` (the simulated projection: validation, protocol, maps, sensitivity,
scenarios) and ``index``. Their command is :mod:`specedge.analysis.report`."""
