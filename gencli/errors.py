"""The exceptions gencli raises for problems a user can fix.

Only ``gencli.cli`` turns them into one-line ``Error: ...`` messages; the library
raises them with messages that say what was expected, what was found, where, and
what to do.
"""


class GencliError(Exception):
    """A problem the user can fix; its message is shown as one line."""


class DataError(GencliError):
    """The input data cannot be read, or cannot be used as it is."""


class ModelFileError(GencliError):
    """A model file cannot be read, or is not one gencli can trust."""


class FitError(GencliError):
    """The density could not be fitted to the data with the options given."""


class OutputError(GencliError):
    """An output file cannot be written."""
