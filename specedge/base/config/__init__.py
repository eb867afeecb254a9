"""Typed schemas for every Hydra config group, and the checks that run at start-up.

Each group under ``conf/`` extends one of these dataclasses (``defaults: [base_<group>]``), so a
misspelt key or a wrongly typed value fails while Hydra composes. Range and cross-field checks
live in ``__post_init__`` and run when :func:`~specedge.base.config.run.to_run_config` turns the
composed DictConfig into objects, before any model is loaded: a bad value never costs a model
load or a partial run. They check values only: what the machine must have (the files a
config names) is :func:`~specedge.base.config.preflight.preflight`, which every command that
runs or simulates calls before a model loads, so a config composes, and an old run directory's
loads, anywhere.

One module per config group (``model``, ``edge``, ``server``, ``hardware``, ``baseline``,
``dataset`` with ``generation``, ``tools`` for ``profile`` and ``simulate``), the shared checks
(``checks``), the machine's (``preflight``), and the whole run (``run``: :class:`RunConfig`,
registration, the saved copy).
"""
