"""The ``qnas`` commands dispatched: the parser, logging and the one-line ending of a usage error or an
OS error (a full disk, a read-only directory, a name too long). Imported by :func:`qiskit_qnas.cli.main`
once Ctrl-C and SIGTERM are handled (:mod:`qiskit_qnas.cli.signals`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..backends import TARGET_SYNTAX, fake_backend, fake_backend_classes, target_backend
from .arguments import (
    DATASETS,
    DD_CHOICES,
    LOG_LEVELS,
    PARAM_FLAGS,
    PROG,
    TWIRLING_CHOICES,
    UsageError,
    build_parser,
)
from .arguments import _library_error as _library_error  # importable here, as before the package
from .commands import COMMANDS, cmd_export, cmd_report, cmd_resume, cmd_search, on_target_accuracy, os_error_line
from .logs import configure_logging
from .run_directory import CONFIG_FORMAT, CONFIG_SECTIONS
from .settings import export_backend, load_data, make_estimator, prepare
from .signals import report_interruption


def run_command(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run its command; returns the exit code (2 for a bad
    command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    with configure_logging(getattr(args, "log_level", "warning")):
        try:
            return COMMANDS[args.command](args)
        except UsageError as exc:
            parser.error(str(exc))
        except KeyboardInterrupt as exc:  # before or after a fit (inside one, the command says how to resume)
            return report_interruption(exc)
        except OSError as exc:  # a path that cannot be made or written (full disk, read-only, name too long)
            print(f"{PROG}: error: {os_error_line(exc)}", file=sys.stderr)
            return 2


__all__ = ["COMMANDS", "CONFIG_FORMAT", "CONFIG_SECTIONS", "DATASETS", "DD_CHOICES", "LOG_LEVELS", "PARAM_FLAGS",
           "PROG", "TARGET_SYNTAX", "TWIRLING_CHOICES", "UsageError", "build_parser", "cmd_export",
           "cmd_report", "cmd_resume", "cmd_search", "configure_logging", "export_backend", "fake_backend",
           "fake_backend_classes", "load_data", "make_estimator", "on_target_accuracy", "prepare", "run_command",
           "target_backend"]
