"""Local HTTP fake upstreams that speak the providers' wire formats (see README.md).

Import the fakes from their modules (``tests.fakes.gemini``, ``tests.fakes.openai``): this package
re-exports nothing so that ``python -m tests.fakes.gemini`` does not import its own module twice.
"""
