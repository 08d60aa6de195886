"""User-facing errors: the CLI prints these as one line and exits 2."""


class UserError(Exception):
    """A mistake the user can fix (missing path, bad config key, wrong layout).

    The message must be one line and say what to do; no traceback is shown.
    """


class NoFaceError(UserError):
    """Alignment was asked for and the detector found no face in the image."""
