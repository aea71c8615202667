"""Errors shared by every layer (the lowest module: it imports nothing of the package)."""


class UserError(Exception):
    """An error the user caused and can fix; printed as one line, exit code 2."""
