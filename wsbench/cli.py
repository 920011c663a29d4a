"""``wsbench run|list|check|fetch|leaderboard|paper-tables``: one command for the tools that are
also ``python -m benchmarks.<tool>``."""

from __future__ import annotations

import logging
import sys

from benchmarks import fetch, leaderboard, paper_tables, run
from benchmarks.launchers import register_all
from benchmarks.plugins import import_plugin, requested, resolve_method
from datasets.contract import check_method
from datasets.errors import exit_status

USAGE = """usage: wsbench COMMAND [ARGS]

commands:
  run            train and test methods on a suite (python -m benchmarks.run; --help for its options)
  list           the suites, datasets and methods, with every option (run --list)
  check METHOD   the method contract: claimed symmetries on random and trained networks, controls,
                 batch independence, a gradient step (METHOD: a name or pkg.module:builder; --plugin MODULE)
  fetch NAME     download a dataset's published files (python -m benchmarks.fetch)
  leaderboard    render the leaderboard from a results folder (python -m benchmarks.leaderboard)
  paper-tables   render the published numbers beside ours (python -m benchmarks.paper_tables)
"""


def check(argv: list[str]) -> int:
    """``wsbench check METHOD [--plugin MODULE] [--profile quick|paper] [--random-only]``."""
    parser = run.OneLineParser(prog="wsbench check", description=check.__doc__)
    parser.add_argument("method")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    parser.add_argument("--profile", choices=["quick", "paper"], default="quick")
    parser.add_argument("--random-only", action="store_true", help="leave out the trained networks")
    args = parser.parse_args(argv)
    register_all()

    def command() -> int:
        for name in requested(tuple(args.plugin)):
            import_plugin(name)
        report = check_method(resolve_method(args.method), profile=args.profile, trained=not args.random_only)
        print(report)
        return 0 if report.passed else 1

    return exit_status(command)


COMMANDS = {"run": run.main, "list": lambda argv: run.main(["--list", *argv]), "check": check, "fetch": fetch.main,
            "leaderboard": leaderboard.main, "paper-tables": paper_tables.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = not argv or argv[0] in ("-h", "--help")
        print(USAGE if known else f"error: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}",
              file=sys.stdout if known else sys.stderr)
        return 0 if known else 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
