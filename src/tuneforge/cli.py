"""How a user command (predict, by-hand eval, harvest) answers bad input: one line on
stderr that names the input and the fix, and exit status 2; never a traceback.

`run(main)` wraps a command's main(). What it turns into one line is the errors bad input
raises here: UserError, the ValueErrors readers raise naming file and line, a pin that does
not hold, a file that cannot be read or decoded. Set TUNEFORGE_TRACEBACK=1 to see the
traceback instead (for a bug report).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from tuneforge.fetch import PinMismatch
from tuneforge.toolchain import ToolchainMismatch

EXIT_BAD_INPUT = 2  # as argparse exits on a bad argument


class UserError(ValueError):
    """A bad input the user can fix; the message names the input and the fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse prints its whole usage block before the error; one line is enough."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def decode_utf8(data: bytes, name: str) -> str:
    """`data` as text; bytes that are not UTF-8 are an error naming file, line and column
    (a changelog in Latin-1 is converted first: iconv -f latin1 -t utf-8)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(f"{name}:{line}:{col}: byte 0x{data[e.start]:02x} is not UTF-8; convert the "
                        f"input to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def read_input(name: str, what: str = "input file") -> bytes:
    """The bytes of `name` ('-': stdin), or a UserError that says what is wrong with it."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(f"{name}: no such {what}; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{name}: is a directory, not an {what}; name a file") from None
    except PermissionError:
        raise UserError(f"{name}: permission denied; make the {what} readable") from None


def run(main: Callable[[], int], prog: str | None = None) -> int:
    """main()'s exit status; a bad input is one line on stderr and EXIT_BAD_INPUT."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        return main()
    except (ValueError, PinMismatch, OSError, LookupError, ToolchainMismatch) as e:
        # ValueError covers UserError, UnicodeDecodeError, pydantic's ValidationError and the
        # readers' "file:line: reason" errors; LookupError a registry with nothing promoted
        if os.environ.get("TUNEFORGE_TRACEBACK"):
            raise
        if isinstance(e, OSError) and e.filename and str(e.filename) not in str(e.strerror or ""):
            msg = f"{e.filename}: {e.strerror or e}"
        else:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
