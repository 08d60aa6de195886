"""Benchmarks behind ``vlrface bench train|infer|search``.

Each returns a flat ``dict`` of figures (the CLI prints it and can write it as
JSON); the measured figures with device, command and date live in
``benchmarks/BENCHMARKS.md``. Benchmarks are run by hand, never as timed tests.
"""
