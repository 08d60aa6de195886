"""``SCORERS``, in a module of its own so that scorers register themselves without a circle."""

from ..registry import Registry

SCORERS: Registry = Registry("quality scorer")
