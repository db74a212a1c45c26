"""The ``bayessky`` command: one sub-module per sub-command, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import copy
import importlib
import sys

__all__ = ["main"]

# sub-command -> module; a module exposes add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "demo": "bayessky.cli.demo",
    "run": "bayessky.cli.run",
    "train": "bayessky.cli.train",
    "sample": "bayessky.cli.sample",
    "simulate": "bayessky.cli.simulate",
    "models": "bayessky.cli.models",
    "priors": "bayessky.cli.priors",
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors ('--n abc', an unknown flag) as the one line every bayessky error is,
    without the usage block; the sub-command parsers inherit this class."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message.splitlines()[0] if message else 'invalid arguments'}",
              file=sys.stderr)
        sys.exit(2)


def _check_common(args) -> None:
    """Flags several commands share, checked once here before any command runs."""
    from .._validate import check_seed

    if getattr(args, "seed", None) is not None:
        try:
            check_seed(args.seed, "--seed")  # numpy's own error names no argument
        except ValueError as err:
            raise CLIError(str(err)) from None


def parse_device(text: str):
    """``--device`` as a torch.device that exists here (torch's own errors are tracebacks)."""
    from .._validate import check_device

    try:
        return check_device(text, "--device")
    except ValueError as err:
        raise CLIError(str(err)) from None


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The commands' descriptions as written, and every option's default in its help: appended as
    ``(default: ...)`` unless the help already says it; options without a default (None) and flags
    are left as they are."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text.lower() or action.default in (None, argparse.SUPPRESS)
                or action.nargs == 0 or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action):
        # argparse formats no help line for an option without help text: give it its default
        if (not action.help and action.option_strings and action.nargs != 0
                and action.default not in (None, argparse.SUPPRESS)):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="bayessky",
        description="Field-level Bayesian inference on cosmological maps with deep generative priors.",
    )
    parser.add_argument("--version", action="version", version=f"bayessky {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            if err.name != modname:
                raise
            p = sub.add_parser(name, help="(not available in this build)")
            p.set_defaults(_missing=name)
            continue
        mod.add_parser(sub)
    for name, p in sub.choices.items():  # every command's --help shows its defaults
        if name in COMMANDS:
            p.formatter_class = HelpFormatter
            if "--quiet" not in p._option_string_actions:
                p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that re-launch themselves
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "_missing", None):
        print(f"bayessky {args._missing}: not available in this build yet", file=sys.stderr)
        return 2
    from ._write import first_missing, remove_if_empty

    created = first_missing(getattr(args, "out", None))  # removed again if the command fails empty
    status = 2
    try:
        _check_common(args)
        status = int(args.func(args) or 0)
        return status
    except CLIError as err:
        print(f"bayessky {args.command}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError as err:
        # a size no check foresaw: one line, not a traceback (the process can still print)
        print(f"bayessky {args.command}: error: out of memory{f' ({err})' if str(err) else ''}; "
              "choose smaller sizes", file=sys.stderr)
        return 2
    except RecursionError as err:
        print(f"bayessky {args.command}: error: RecursionError: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"bayessky {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as err:
        # last resort for file-system failures the commands do not check up front (permissions,
        # a full disk): one line with the path, as the CLI promises, instead of a traceback
        where = f": {err.filename!r}" if getattr(err, "filename", None) else ""
        print(f"bayessky {args.command}: error: {err.strerror or type(err).__name__}{where}", file=sys.stderr)
        return 2
    finally:
        if status != 0:
            remove_if_empty(created)


if __name__ == "__main__":
    sys.exit(main())
