"""Typed errors raised by the library. Only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class for every error lookalike raises on purpose.

    ``exit_code`` is what the CLI exits with; 2 means "bad input from the user".
    """

    exit_code = 1


class InvalidInput(LookalikeError):
    """The user gave something we cannot use (bad argument, bad query, bad manifest row)."""

    exit_code = 2


class ImageRejected(InvalidInput):
    """A file could not be used as an image. ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class QueryError(InvalidInput):
    """A search query could not be resolved (missing file, unknown id, bad URL...)."""


class NoTextTower(QueryError):
    """A text query against a model without a text tower (the message names those with one)."""


class UnknownLabel(QueryError):
    """A ``label`` filter names a label no item of the collection has."""


class CollectionError(LookalikeError):
    """Problems with the collection folder itself."""

    exit_code = 2


class CollectionNotFound(CollectionError):
    pass


class NotACollection(CollectionError):
    pass


class EmptyCollection(CollectionError):
    pass


class ModelMismatch(CollectionError):
    """The model given is not the one a collection was built with. ``requested`` is the
    requested embedder when there was one (an empty collection may adopt it)."""

    requested: object = None


class ItemNotFound(InvalidInput):
    pass


class ItemExists(InvalidInput):
    """An id that is already taken (by a stored item, or an add in flight elsewhere)."""


class ModelUnavailable(LookalikeError):
    """The model's files could not be found or loaded; the message is a user-facing paragraph."""

    exit_code = 3


class SourceError(InvalidInput):
    """A source (folder, file, manifest) could not be read."""


class DownloadError(LookalikeError):
    """A URL could not be fetched."""


class MissingDependency(LookalikeError):
    """An optional extra is needed for this feature."""

    exit_code = 3


class SparkJobError(LookalikeError):
    """A ``spark-index`` job failed on the cluster (not one bad file: those are skip rows)."""


class ServiceUnavailable(LookalikeError):
    """A service the collection lives on (Milvus, Redis) is down or unreachable. The CLI exits
    3; the server answers 503 with ``Retry-After``. ``service`` names it, ``uri`` is shown
    without credentials."""

    exit_code = 3

    def __init__(self, service: str, uri: str, detail: str = "") -> None:
        self.service, self.uri, self.detail = service, uri, detail
        tail = f": {detail}" if detail else ""
        super().__init__(f"{service} at {uri} is unavailable{tail}")


class ServiceFailed(LookalikeError):
    """A service the collection lives on (Milvus) answered a request with an error of its own:
    neither bad input nor unreachable (e.g. Milvus 2.3 failing to read a segment's files
    while it compacts). The server answers 502; the CLI exits 1."""


class BackendMismatch(CollectionError):
    """A Milvus collection or Redis database holds something else than this collection
    (other dimensions, metric, model or collection); the message names both."""
