"""The one exception type users see.

Every problem a user can fix (bad config, bad data file, missing optional dependency, no network)
is raised as :class:`SpamTuneError` with a one-line message that says what is wrong and how to fix
it. The CLI prints it as ``error: <message>`` and exits with status 2, without a traceback; any
other exception is a bug and keeps its traceback.
"""


class SpamTuneError(Exception):
    """A user-fixable problem; ``str(err)`` is a single line naming the problem and the fix."""


class ConfigError(SpamTuneError, ValueError):
    """The configuration (YAML file or ``key=value`` override) is invalid."""


class DataError(SpamTuneError, ValueError):
    """The input data is missing, unreadable or does not have the expected shape."""
