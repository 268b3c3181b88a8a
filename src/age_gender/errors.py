"""User mistakes become one clear line and a non-zero exit, never a traceback."""

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do."""


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wraps an entry point so a UserError prints `error: ...` and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
