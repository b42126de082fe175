"""One run of ``Collection.add``: scan the sources, classify each file (new, unchanged,
changed, renamed, vanished), decode and embed in the worker pipeline, commit in batches
(vectors first, then the catalog rows), and update the index.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.identity import file_sha256
from ..store.catalog import Item, Skipped
from . import filters, pipeline
from .checks import BAD_NAME, catalog_text, file_problem, stat_problem
from .decode import DecodeLimits
from .hashes import content_hash
from .inference import InferenceQueue
from .report import IndexReport, Target

log = logging.getLogger(__name__)


class Indexer:
    """One run of ``Collection.add``: scan, classify, embed, commit, update the index."""

    def __init__(
        self,
        coll: Target,
        limits: DecodeLimits,
        workers: int | None,
        batch_size: int,
        progress: Callable[[int, int], None] | None,
        download_options: Any,
        decode: pipeline.DecodeMode | None = None,
    ) -> None:
        self.coll = coll
        self.decode = decode  # None: pipeline.default_decode
        self.cat = coll.catalog
        self.limits = limits
        self.workers = workers  # None: pipeline.default_workers, once the model is loaded
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.download_options = download_options
        self.report = IndexReport()
        self.reserved_ids: set[str] = set()
        self.added_slots: list[int] = []
        self.removed_slots: list[int] = []
        self.skipped_now: set[str] = set()

    # ids --------------------------------------------------------------------------------

    def _unique_id(self, wanted: str, source: str, path: str | None) -> str:
        def taken(candidate: str) -> bool:
            if candidate in self.reserved_ids:
                return True
            other = self.cat.get(candidate)
            return other is not None and other.path != path

        candidate = wanted
        if taken(candidate):
            candidate = f"{Path(source).name}/{wanted}"
        n = 2
        base = candidate
        while taken(candidate):
            candidate = f"{base}#{n}"
            n += 1
        self.reserved_ids.add(candidate)
        return candidate

    def _skip(
        self,
        path: str,
        source: str,
        reason: str,
        detail: str,
        size: int | None,
        mtime_ns: int | None,
    ) -> None:
        path, source = catalog_text(path), catalog_text(source)
        self.cat.record_skip(Skipped(path, source, reason, detail, size, mtime_ns))
        self.report.skipped += 1
        self.report.skipped_files.append((path, reason, detail))
        self.skipped_now.add(path)
        log.info("skipped %s: %s %s", path, reason, detail)

    # the run ----------------------------------------------------------------------------

    def run(self, sources: Sequence[str | os.PathLike[str]]) -> IndexReport:
        from .sources import iter_entries

        started = time.perf_counter()
        gen_before = self.cat.generation
        change = filters.reapply(self.cat, self.limits)
        if change is not None:
            self.removed_slots += change.removed_slots
            self.report.removed += len(change.removed_slots)
            self.report.notes.append(change.message)
        keys = {catalog_text(str(Path(s).resolve())) for s in sources}
        bad_rows: list[tuple[str, str]] = []
        entries = list(
            iter_entries(
                list(sources),
                exclude=[self.coll.root.resolve()],
                on_error=lambda where, why: bad_rows.append((where, why)),
            )
        )
        for e in entries:
            e.source = catalog_text(e.source)
        keys |= {e.source for e in entries}
        with self.cat.transaction():
            for where, why in bad_rows:
                self._skip(where, where.rsplit(":", 1)[0], "bad-manifest-row", why, None, None)
        entries = self._download(entries)

        new: list[tuple[Any, os.stat_result]] = []
        changed: list[tuple[Any, os.stat_result, Item]] = []
        seen_ids: set[str] = set()
        seen_paths: set[str] = set()
        with self.cat.transaction():
            for e in entries:
                path = str(e.path)
                seen_paths.add(path)
                if catalog_text(path) != path:
                    self._skip(path, e.source, "bad-name", BAD_NAME, None, None)
                    continue
                try:
                    st = os.stat(path)
                except OSError as exc:
                    self._skip(path, e.source, *stat_problem(path, exc), None, None)
                    continue
                problem = file_problem(st, self.limits.max_file_bytes)
                if problem is not None:
                    # no size/mtime: checked again on every run (the limit may change)
                    self._skip(path, e.source, *problem, None, None)
                    continue
                item = self.cat.by_path(path)
                if item is not None:
                    seen_ids.add(item.id)
                    self.reserved_ids.add(item.id)
                    if item.size == st.st_size and item.mtime_ns == st.st_mtime_ns:
                        self.report.unchanged += 1
                        self._refresh(item, e)
                    else:
                        changed.append((e, st, item))
                    continue
                skip = self.cat.get_skip(path)
                if skip is not None and skip.size == st.st_size and skip.mtime_ns == st.st_mtime_ns:
                    self.skipped_now.add(path)
                    self.report.skipped += 1
                    self.report.skipped_files.append((path, skip.reason, skip.detail))
                    continue
                new.append((e, st))

        vanished = [
            i
            for key in keys
            for i in self.cat.items(key)
            if i.id not in seen_ids and i.path not in seen_paths
        ]
        new = self._match_renames(new, vanished)
        vanished_ids = {i.id for i in vanished if i.id not in self._renamed_from}

        tasks: list[pipeline.Task] = []
        meta: dict[int, tuple[Any, Item | None]] = {}
        for e, _st in new:
            key = len(tasks)
            tasks.append(pipeline.Task(key, str(e.path)))
            meta[key] = (e, None)
        for e, _st, item in changed:
            key = len(tasks)
            tasks.append(pipeline.Task(key, str(e.path), expect_hash=item.content_hash))
            meta[key] = (e, item)
        scanned = time.perf_counter()
        self.report.seconds.update(scan=scanned - started, model=0.0)
        self._embed_all(tasks, meta)
        embedded = time.perf_counter()
        self.report.seconds["embed"] = embedded - scanned - self.report.seconds.get("model", 0.0)

        if vanished_ids:
            with self.cat.transaction():
                self.removed_slots += self.cat.delete(vanished_ids)
                self.report.removed += len(vanished_ids)
                self.cat.bump_generation()
        with self.cat.transaction():
            for skip in self.cat.skipped():
                if (
                    skip.source in keys
                    and skip.path not in seen_paths
                    and skip.path not in self.skipped_now
                ):
                    self.cat.clear_skip(skip.path)  # the file is gone from its source
        if self.cat.generation != gen_before or not self.coll.index.exists():
            self.coll.index.update(gen_before, self.added_slots, self.removed_slots)
        self.report.seconds["index"] = time.perf_counter() - embedded
        return self.report

    _renamed_from: set[str]

    def _refresh(self, item: Item, e: Any) -> None:
        """Keep label/metadata in step with the source without re-embedding."""
        label = e.label
        if item.label != label or item.metadata != e.metadata or item.url != e.url:
            self.cat.update_location(
                item.id,
                new_id=item.id,
                path=item.path,
                source=e.source,
                label=label,
                metadata=e.metadata,
                size=item.size,
                mtime_ns=item.mtime_ns,
                url=e.url,
            )

    def _match_renames(
        self, new: list[tuple[Any, os.stat_result]], vanished: list[Item]
    ) -> list[tuple[Any, os.stat_result]]:
        self._renamed_from = set()
        if not vanished or not new:
            return new
        by_size: dict[int, list[Item]] = {}
        for item in vanished:
            if item.size is not None:
                by_size.setdefault(item.size, []).append(item)
        remaining: list[tuple[Any, os.stat_result]] = []
        with self.cat.transaction():
            for e, st in new:
                candidates = [
                    i for i in by_size.get(st.st_size, []) if i.id not in self._renamed_from
                ]
                if not candidates:
                    remaining.append((e, st))
                    continue
                try:
                    digest = file_sha256(Path(e.path))
                except OSError:
                    remaining.append((e, st))
                    continue
                match = next((i for i in candidates if i.content_hash == digest), None)
                if match is None:
                    remaining.append((e, st))
                    continue
                self._renamed_from.add(match.id)
                self.reserved_ids.discard(match.id)
                new_id = self._unique_id(e.id or e.relpath, e.source, str(e.path))
                self.cat.update_location(
                    match.id,
                    new_id=new_id,
                    path=str(e.path),
                    source=e.source,
                    label=e.label,
                    metadata=e.metadata,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    url=e.url,
                )
                self.report.renamed += 1
            if self.report.renamed:
                self.cat.bump_generation()
        return remaining

    def _download(self, entries: list[Any]) -> list[Any]:
        url_entries = [e for e in entries if e.path is None and e.url]
        if not url_entries:
            return [e for e in entries if e.path is not None]
        from .download import Downloader, DownloadOptions

        opts = self.download_options or DownloadOptions()
        downloader = Downloader(self.coll.root / "cache" / "urls", opts)
        by_id: dict[str, Any] = {}
        for e in url_entries:
            if e.id is None:
                e.id = content_hash(e.url.encode())[:16]
            by_id[e.id] = e
        with self.cat.transaction():
            for res in downloader.fetch_many((e.id, e.url) for e in url_entries):
                e = by_id[res.id]
                if res.path is None:
                    self._skip(e.url, e.source, "download-failed", res.error or "", None, None)
                else:
                    e.path = res.path
        return [e for e in entries if e.path is not None]

    def _embed_all(
        self, tasks: list[pipeline.Task], meta: dict[int, tuple[Any, Item | None]]
    ) -> None:
        total = len(tasks)
        if total == 0:
            if self.progress:
                self.progress(0, 0)
            return
        emb = self.coll.embedder
        loading = time.perf_counter()
        emb.load()
        preparer = emb.ingest_preparer()
        self.report.seconds["model"] = time.perf_counter() - loading
        workers = self.workers
        if workers is None:  # where the model runs decides how many cores decoding gets
            workers = pipeline.default_workers(not emb.binary and not emb.runs_on_gpu)
        window = max(4 * self.batch_size, 8 * max(workers, 1))
        pending: list[pipeline.Result] = []
        done = 0
        draft = pipeline.index_draft(preparer, emb.binary)
        results = pipeline.run(
            tasks,
            preparer,
            self.limits,
            workers=workers,
            max_in_flight=window,
            draft=draft,
            mode=self.decode or pipeline.default_decode(emb.runs_on_gpu),
            gpu_device=emb.gpu_device,
            pixel_hash_kind=self.cat.pixel_hash_kind,
        )
        # Inference runs in its own thread: see inference.py.
        queue = InferenceQueue(self._embed, lambda batch, vecs: self._commit(batch, vecs, meta))
        with queue, contextlib.closing(results):
            for res in results:
                e, old = meta[res.key]
                if res.status == "same":
                    assert old is not None
                    with self.cat.transaction():
                        self.cat.update_stat(old.id, res.size, res.mtime_ns)
                    self.report.unchanged += 1
                elif res.status == "skipped":
                    with self.cat.transaction():
                        if old is not None:  # the file changed into something unreadable
                            self.removed_slots += self.cat.delete([old.id])
                            self.cat.bump_generation()
                            self.report.removed += 1
                        self._skip(
                            str(e.path),
                            e.source,
                            res.reason,
                            res.detail,
                            res.size,
                            res.mtime_ns,
                        )
                else:
                    pending.append(res)
                    if len(pending) >= self.batch_size:
                        queue.submit(pending)
                        pending = []
                done += 1  # noqa: SIM113 - counts skipped and embedded alike
                if self.progress:
                    self.progress(done, total)
            if pending:
                queue.submit(pending)
            queue.finish()

    def _embed(self, results: list[pipeline.Result]) -> np.ndarray:
        """The vectors of one batch (runs in the inference thread)."""
        return self.coll.embedder.embed(
            [r.prepared for r in results if r.prepared is not None], batch_size=self.batch_size
        )

    def _commit(
        self,
        results: list[pipeline.Result],
        vecs: np.ndarray,
        meta: dict[int, tuple[Any, Item | None]],
    ) -> None:
        first = self.cat.next_slot
        # Vectors first (fsynced), then the catalog rows that point at them, in one transaction.
        self.coll.vectors.write(first, vecs)
        with self.cat.transaction():
            self.cat.reserve_slots(len(results))
            for offset, res in enumerate(results):
                e, old = meta[res.key]
                path = str(e.path)
                if old is not None:
                    self.removed_slots += self.cat.delete([old.id])
                    item_id = old.id
                else:
                    item_id = self._unique_id(e.id or e.relpath, e.source, path)
                self.cat.insert(
                    Item(
                        id=item_id,
                        slot=first + offset,
                        source=e.source,
                        path=path,
                        url=e.url,
                        label=e.label,
                        metadata=e.metadata,
                        size=res.size,
                        mtime_ns=res.mtime_ns,
                        content_hash=res.content_hash,
                        pixel_hash=res.pixel_hash,
                        phash=res.phash,
                        width=res.width,
                        height=res.height,
                    )
                )
                self.cat.clear_skip(path)
                self.added_slots.append(first + offset)
            self.cat.bump_generation()
        self.report.indexed += len(results)
