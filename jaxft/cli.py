"""What every `python -m jaxft.*` shares: bad input ends as one line `error: ...` on stderr and exit 2.

Entry points stay thin: `main = entry_point(__doc__)(body)`, the body raises JaxftError subclasses
(never prints and returns a code), and argparse's own errors go the same way through ArgumentParser.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence

from jaxft.errors import ConfigError, JaxftError

USAGE_ERROR = 2
DEFAULT_CODES = ((JaxftError, USAGE_ERROR),)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are ConfigErrors (one line, with the usage folded in), not its own exit."""

    def error(self, message: str):
        usage = " ".join(self.format_usage().split())
        raise ConfigError(f"{message} ({usage})")


def entry_point(help_text: str | None = None,
                codes: Sequence[tuple[type[BaseException], int]] = DEFAULT_CODES) -> Callable:
    """Wrap `body(argv) -> int | None` as `main(argv=None) -> int`.

    help_text: printed for a first argument -h/--help (argparse bodies print their own). codes: the
    exit code of each error class, first match wins; anything else (KeyboardInterrupt, a bug)
    propagates unchanged.
    """
    caught = tuple(kind for kind, _ in codes)

    def wrap(body: Callable[[list[str]], int | None]) -> Callable[..., int]:
        @functools.wraps(body)
        def main(argv: Sequence[str] | None = None) -> int:
            argv = list(sys.argv[1:] if argv is None else argv)
            if help_text and argv[:1] in (["-h"], ["--help"]):
                print(help_text)
                return 0
            try:
                return body(argv) or 0
            except caught as e:
                print(f"error: {e}", file=sys.stderr)
                return next(code for kind, code in codes if isinstance(e, kind))

        return main

    return wrap
