"""The one exception type for mistakes a user can fix: train.py prints it as a single line."""


def first_line(error: object, limit: int = 200) -> str:
    """The first line of an exception's message, at most `limit` characters; its type's name when
    the message is empty. What a one-line error quotes of the library error behind it."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


class UserInputError(Exception):
    """A bad config value, missing data, a bad checkpoint or an impossible flag combination.

    The message must name the problem and the fix; train.py prints it without a traceback
    and exits with status 2.
    """


class TrainingDivergedError(UserInputError):
    """The training loss became NaN or infinite; raised before the optimizer step uses it."""


class StoppedBySignal(BaseException):  # noqa: N818 - a stop the user asked for, not an error
    """SIGINT (Ctrl-C) or SIGTERM stopped a command; train.py prints the message and exits with
    128 + the signal's number (130, 143), as shells report a process a signal ended.

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int, message: str) -> None:
        self.signum = signum
        super().__init__(message)
