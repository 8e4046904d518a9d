"""The one exception type for mistakes a user can fix: train.py prints it as a single line."""


class UserInputError(Exception):
    """A bad config value, missing data, a bad checkpoint or an impossible flag combination.

    The message must name the problem and the fix; train.py prints it without a traceback
    and exits with status 2.
    """


class TrainingDivergedError(UserInputError):
    """The training loss became NaN or infinite; raised before the optimizer step uses it."""
