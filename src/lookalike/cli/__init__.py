"""The command line: the only part of lookalike that prints or exits.

``main`` parses and dispatches; each command group lives in its own module here.
"""

from .entry import _entry, build_parser, main

__all__ = ["_entry", "build_parser", "main"]
