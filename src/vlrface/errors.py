"""User-facing errors: the CLI prints these as one line and exits 2."""


class UserError(Exception):
    """A mistake the user can fix (missing path, bad config key, wrong layout).

    The message must be one line and say what to do; no traceback is shown.
    """


class NoFaceError(UserError):
    """Alignment was asked for and the detector found no face in the image."""


def brief(error: BaseException, limit: int = 160) -> str:
    """One line about ``error`` for a :class:`UserError` message: its first sentence, whole words only.

    Library messages run long (PyTorch's are paragraphs) and some are empty
    (``EOFError()``); this gives the first line's first sentence, cut at a word
    boundary with "…" past ``limit`` characters, or the exception's type name.
    """
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    end = text.find(". ")
    text = text[: end + 1] if end > 0 else text
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text or type(error).__name__
