"""A Milvus collection's upkeep: flushing, compaction, and waiting for its index to cover
every row (part of :class:`lookalike.store.milvus.MilvusVectors`)."""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from typing import Any

from lookalike.errors import ServiceFailed

__all__ = ["MilvusError", "MilvusUpkeep"]

COMPACT_TRIES = 15  # compactions asked for when Milvus plans none for several segments


class MilvusError(ServiceFailed):
    """Milvus refused or failed a request (not a connection problem); the message is one
    line. Bad filters are InvalidInput instead."""


class MilvusUpkeep:
    """Mixed into MilvusVectors, which provides these."""

    collection: str
    display_uri: str
    _call_timeout: int

    @property
    def lite(self) -> bool:
        raise NotImplementedError

    def _call(self, action: str) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def flush(self, *, compact: bool = False) -> set[int]:
        """Seal the growing segments (the server then builds their index); ``compact`` also
        merges small segments at once (a server does by itself within minutes), and waits.
        Returns the ids of the segments merged away (none without ``compact``)."""
        with self._call("flush") as client:
            grpc = client._get_connection()
            grpc.flush([self.collection], timeout=self._call_timeout)
            if not compact or self.lite:
                return set()
            t = self._call_timeout
            for _ in range(COMPACT_TRIES):
                job = grpc.compact(self.collection, timeout=t)
                grpc.wait_for_compaction_completed(job, timeout=1800)
                plans = grpc.get_compaction_plans(job, timeout=t).plans
                if plans or len(grpc.get_persistent_segment_infos(self.collection, t)) <= 1:
                    break
                # Milvus 2.3 answers a compaction with no plan while it is busy compacting
                # (other collections too): ask again
                time.sleep(2.0)
        return {int(source) for plan in plans for source in plan.sources}

    def index_progress(self) -> tuple[int, int, int]:
        """(indexed rows, total rows, pending rows) of the vector index (Lite: zeros)."""
        with self._call("describe the index") as client:
            desc = client.describe_index(self.collection, "vector", timeout=self._call_timeout)
        indexed, total = int(desc.get("indexed_rows", 0)), int(desc.get("total_rows", 0))
        return indexed, total, int(desc.get("pending_index_rows", 0))

    def wait_indexed(
        self, timeout: float = 300.0, *, reload: bool = False, compact: bool = False
    ) -> None:
        """Flush (``compact``: see flush), then wait until the index covers every row
        (benchmarks). A server scans flushed rows exactly too until it hands them over (a
        minute or so); ``reload`` releases and loads the collection so that searches use only
        the index at once (it is unavailable meanwhile: not for a live collection). After a
        compaction it is reloaded until no merged-away segment is served: Milvus 2.3 keeps
        serving the sources until the merged segment's index is built."""
        merged = self.flush(compact=compact)
        deadline = time.monotonic() + timeout
        while True:
            indexed, total, pending = self.index_progress()
            if indexed >= total and pending == 0:
                break
            self._wait_more(deadline, timeout, f"has {indexed} of {total} rows indexed", 0.2)
        while reload and not self.lite:
            with self._call("reload the collection") as client:
                client.release_collection(self.collection, timeout=self._call_timeout)
                left = max(1, math.ceil(deadline - time.monotonic()))
                client.load_collection(self.collection, timeout=left)
                served = client._get_connection().get_query_segment_info(
                    self.collection, timeout=self._call_timeout
                )
            stale = merged & {int(segment.segmentID) for segment in served}
            if not stale:
                break
            self._wait_more(deadline, timeout, f"serves {len(stale)} merged-away segments", 1.0)

    def _wait_more(self, deadline: float, timeout: float, state: str, pause: float) -> None:
        """Sleep ``pause`` s before looking again, or raise MilvusError past ``deadline``."""
        if time.monotonic() >= deadline:
            raise MilvusError(
                f"Milvus at {self.display_uri}: '{self.collection}' still {state}"
                f" after {timeout:g} s"
            )
        time.sleep(pause)
