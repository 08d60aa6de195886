"""``python -m vlrface`` = the ``vlrface`` command (useful where the script is not on PATH)."""

from .cli import main

main()
