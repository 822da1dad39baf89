"""The errors a user can fix, and how a command-line tool reports them.

Every error raised because of what the user gave (a file, a folder, an
option, a checkpoint) derives from :class:`UserError` as well as from the
built-in type callers have always caught (``ValueError``, ``RuntimeError``,
``OSError``...).  The command-line tools print a ``UserError`` - and an
``OSError`` from the operating system (permission denied, a full disk, a
file where a folder is expected) - as one ``error:`` line naming the path,
and exit non-zero; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EXIT_ERROR = 1


class UserError(Exception):
    """Bad input or environment that the user can fix; the message names the culprit."""


class UsageError(UserError, ValueError):
    """A command-line argument or option value is out of range or inconsistent."""


class UnknownNameError(UserError, KeyError):
    """A name (model, loss, dataset) that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (anything else is a usage error naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def describe_os_error(err: OSError) -> str:
    """One line naming the path(s) and the reason of an operating-system error."""
    if isinstance(err, UserError) or not err.strerror:
        return str(err)
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    return f"{' -> '.join(names)}: {err.strerror}" if names else err.strerror


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a tool's ``main`` and exit: 0 on success, 1 with one ``error:`` message for user and OS errors."""
    try:
        code = main()
    except UserError as err:
        sys.exit(f"error: {err}")
    except OSError as err:
        sys.exit(f"error: {describe_os_error(err)}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
