"""The performance model's parts, one concept each: ``traces`` (what a run's rounds were),
``latency`` (what a forward costs: fitted on a run, or read from a profile), ``events`` (the
SimPy model of the three systems) and ``validation`` (measured against simulated). Its command
is :mod:`specedge.analysis.simulate`."""
