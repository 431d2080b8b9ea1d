"""Errors and warnings that front ends show to the user as a message, never as a traceback."""


class TitlecraftError(Exception):
    """A failure the user can act on; its text is the whole message shown to them."""


class StoreUnavailable(TitlecraftError):
    """The store cannot be written now (locked, read-only, full, cannot be opened), though the same
    write may succeed later: front ends keep such a write and retry it, unlike other failures."""


class TitlecraftWarning(UserWarning):
    """Something went wrong but work continued (e.g. a cache could not be written)."""
