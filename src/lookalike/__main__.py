from .cli.entry import _entry

_entry()
