"""Margin heads; each module registers itself in ``HEADS``."""
