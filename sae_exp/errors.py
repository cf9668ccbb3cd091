"""Errors a user can fix. The CLIs print them as one line and exit non-zero, without a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, files, data) that names the fix. Exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid config value: the message names the key, the value and what is allowed."""


class DataError(UserError):
    """Missing, malformed or unusable data: the message names the file or field and the fix."""


class TrainingError(UserError):
    """Training stopped (non-finite loss, out of memory); the message says what was kept."""

    exit_code = 3


class WriteError(UserError):
    """A file could not be written (disk full, read-only dir, a path that is a file); the
    message names the path and, for a full disk, the space needed. Exit code 4."""

    exit_code = 4
