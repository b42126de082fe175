from .cli.main import _entry

_entry()
