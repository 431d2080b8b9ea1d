"""Errors and warnings that front ends show to the user as a message, never as a traceback."""


class TitlecraftError(Exception):
    """A failure the user can act on; its text is the whole message shown to them."""


class TitlecraftWarning(UserWarning):
    """Something went wrong but work continued (e.g. a cache could not be written)."""
