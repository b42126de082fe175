"""A Python client for ``lookalike serve``, standard library only::

    from lookalike.client import Client

    client = Client("http://127.0.0.1:8000", api_key=None, timeout=30.0)
    hits = client.search("photo.jpg", k=5, where="price < 20")   # list[Hit], path None

The server's JSON errors become the library's typed errors: 400/422 ``InvalidInput``
(``QueryError`` from the search endpoints), 404 ``ItemNotFound``, 409 :class:`ItemExists`,
401/403 :class:`Unauthorized`, 413 and 415 ``ImageRejected``, 503 and a server that cannot
be reached or does not answer in time :class:`ServerUnavailable` (a ``ServiceUnavailable``
with ``retry_after``), other failures :class:`ServerError`.
"""

from .api import Client
from .transport import ItemExists, ServerError, ServerUnavailable, Unauthorized

__all__ = ["Client", "ItemExists", "ServerError", "ServerUnavailable", "Unauthorized"]
