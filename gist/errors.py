"""Exceptions raised for bad user input."""


class GistInputError(ValueError):
    """Input data that GIST cannot use.

    The message always names the offending file (or object), the column or value,
    and what was expected, so that command-line tools can print it as one line
    instead of a traceback.
    """
