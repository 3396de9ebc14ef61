"""The one exception type that reaches the user as a short message instead of a traceback."""


class UserError(Exception):
    """Bad input the user can fix: the message says what is wrong and how to fix it.

    ``train.py`` prints it as ``error: <message>`` and exits with status 2.
    """
