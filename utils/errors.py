"""The errors a user can fix, and how a command-line tool reports them.

Every error raised because of what the user gave (a file, a folder, an
option, a checkpoint) derives from :class:`UserError` as well as from the
built-in type callers have always caught (``ValueError``, ``RuntimeError``,
``OSError``...).  The command-line tools print a ``UserError`` - and an
``OSError`` from the operating system (permission denied, a full disk, a
file where a folder is expected) - as one ``error:`` line naming the path,
and exit non-zero; so is running out of memory (a ``MemoryError``, or the
``RuntimeError`` of torch's CPU allocator, matched by its exact message),
with what to lower.  Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import re
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


# torch's CPU allocator failing (c10's alloc_cpu.cpp); torch prefixes "[enforce fail at FILE:LINE] CHECK. ".
_CPU_ALLOCATOR = re.compile(r"(?:\[enforce fail at [^\]]+\] [^\n]*?\. )?"
                            r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes")


def describe_out_of_memory(err: BaseException) -> str | None:
    """What ran out, when ``err`` says memory ran out (numpy/Python, torch's CPU or CUDA allocator); else None."""
    torch = sys.modules.get("torch")  # never imported here: a tool that ran out of torch memory has it
    if torch is not None and isinstance(err, torch.OutOfMemoryError):
        return "out of GPU memory"
    if isinstance(err, MemoryError):
        return f"out of memory (RAM){': ' + str(err) if str(err) else ''}"
    found = _CPU_ALLOCATOR.match(str(err)) if isinstance(err, RuntimeError) else None
    if found:
        return f"out of memory (RAM): torch could not allocate {_size(int(found[1]))}"
    return None


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def run_cli(main: Callable[[], int | None], memory_advice: str = "") -> None:
    """Run a tool's ``main`` and exit: 0 on success, 1 with one ``error:`` message for user and OS errors.

    ``memory_advice`` (e.g. "lower --max-batch or --tile") follows the message when memory ran out.
    """
    try:
        code = main()
    except UserError as err:
        sys.exit(f"error: {err}")
    except OSError as err:
        sys.exit(f"error: {describe_os_error(err)}")
    except (MemoryError, RuntimeError) as err:
        what = describe_out_of_memory(err)
        if what is None:
            raise  # a bug: keep the traceback
        sys.exit(f"error: {what}" + (f"; {memory_advice}" if memory_advice else ""))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
