"""Acting on duplicate groups: move the non-keepers into a folder, with an undo manifest.

Nothing is ever deleted. :func:`plan_moves` builds the plan (the CLI prints it as a dry
run); :func:`apply_moves` first writes the plan into ``DIR/lookalike-undo.json`` (atomically,
merged with any earlier manifest in that folder), then moves the files one by one:

* a file whose size/mtime differ from the catalog and whose sha256 differs from the indexed
  one has changed since indexing: it is skipped and reported (so is a group whose keeper
  is missing or changed: the duplicate relation may no longer hold);
* ``os.rename`` within a filesystem; across filesystems (``EXDEV``) copy to ``DEST.part``,
  fsync, verify the sha256, remove the original, then rename the copy into place;
* a destination that is already taken (an earlier ``--apply`` into the same folder, or any
  other file) is never overwritten nor taken for the file: the move gets a fresh name
  (``name-1.jpg``, ``name-2.jpg``...), chosen and written to the manifest before moving;
* every step can be interrupted: re-running the same command finds files already at their
  destination (done), a verified ``DEST.part`` whose original is already removed (renames
  it into place) or a stale ``.part`` next to its original (copies again). The manifest
  lists the whole plan from the start, keyed by destination (two applies that moved the
  same path keep both entries), so :func:`undo_moves` works after an interruption too: it
  moves back everything that was moved.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..store.planning import write_json_atomic
from .finder import Group, Member

log = logging.getLogger(__name__)

MANIFEST_NAME = "lookalike-undo.json"
MANIFEST_FORMAT = "lookalike-undo"


@dataclass
class Move:
    src: str
    dest: str
    id: str
    group: int
    keeper: str  # the keeper's path
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    keeper_sha256: str | None = None
    keeper_size: int | None = None
    keeper_mtime_ns: int | None = None


@dataclass
class MoveReport:
    moved: list[Move] = field(default_factory=list)
    already: list[Move] = field(default_factory=list)
    skipped: list[tuple[Move, str]] = field(default_factory=list)
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "moved": len(self.moved),
            "already_moved": len(self.already),
            "skipped": [{"path": m.src, "reason": why} for m, why in self.skipped],
            "manifest": str(self.manifest) if self.manifest else None,
        }


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_moves(groups: Iterable[Group], target: str | os.PathLike[str]) -> list[Move]:
    """One move per non-keeper file of this collection: ``TARGET/group-NNNNN/NAME``."""
    target_dir = Path(target).resolve()
    moves: list[Move] = []
    for g in groups:
        keeper = g.keeper
        used: set[str] = set()
        for m in g.duplicates:
            if m.against or m.path is None:
                continue  # never touch the other collection; URL-only items have no file
            if Path(m.path).resolve().is_relative_to(target_dir):
                continue  # already inside the target folder
            name = Path(m.path).name
            stem, suffix = Path(name).stem, Path(name).suffix
            n = 2
            while name in used:
                name = f"{stem}-{n}{suffix}"
                n += 1
            used.add(name)
            moves.append(_move(m, keeper, str(target_dir / f"group-{g.number:05d}" / name), g))
    return moves


def _move(m: Member, keeper: Member, dest: str, g: Group) -> Move:
    return Move(
        src=m.path or "",
        dest=dest,
        id=m.id,
        group=g.number,
        keeper=keeper.path or keeper.id,
        sha256=m.content_hash,
        size=m.size,
        mtime_ns=m.mtime_ns,
        keeper_sha256=keeper.content_hash if keeper.path else None,
        keeper_size=keeper.size,
        keeper_mtime_ns=keeper.mtime_ns,
    )


def _unchanged(path: str, size: int | None, mtime_ns: int | None, sha: str | None) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size == size and st.st_mtime_ns == mtime_ns:
        return True
    if sha is None or st.st_size != size:
        return False
    return sha256_file(path) == sha


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"undo manifest {p} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"undo manifest {p} is unreadable or not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InvalidInput(f"{p} is not a lookalike undo manifest")
    return data


def _manifest_entries(target: Path) -> list[dict[str, Any]]:
    path = target / MANIFEST_NAME
    return list(read_manifest(path).get("moves", [])) if path.exists() else []


def _write_manifest(
    target: Path, moves: list[Move], collection: str, previous: list[dict[str, Any]]
) -> Path:
    """Merge ``moves`` into the folder's manifest. Entries are keyed by destination, so a
    file moved twice (two applies) keeps both entries and undo restores both."""
    path = target / MANIFEST_NAME
    entries: dict[str, dict[str, Any]] = {e["dest"]: e for e in previous}
    for mv in moves:
        entries[mv.dest] = asdict(mv)
    write_json_atomic(
        path,
        {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "collection": collection,
            "updated_at": time.time(),
            "undo": f"lookalike duplicates --undo {path}",
            "moves": sorted(entries.values(), key=lambda e: (e["group"], e["dest"])),
        },
    )
    return path


def fresh_name(path: str, claimed: set[str] | frozenset[str] = frozenset()) -> str:
    """``path``, or ``stem-1.ext``, ``stem-2.ext``... : the first name not on disk (nor its
    ``.part``) and not in ``claimed``."""
    p = Path(path)
    candidate, n = path, 0
    while (
        candidate in claimed or os.path.lexists(candidate) or os.path.lexists(candidate + ".part")
    ):
        n += 1
        candidate = str(p.with_name(f"{p.stem}-{n}{p.suffix}"))
    return candidate


def _holds(path: str, mv: Move | dict[str, Any]) -> bool:
    """Whether ``path`` holds the moved file's bytes (size/mtime, else sha256)."""
    get = mv.get if isinstance(mv, dict) else mv.__dict__.get
    sha, size, mtime_ns = get("sha256"), get("size"), get("mtime_ns")
    if not os.path.isfile(path):
        return False
    if sha is None:
        return not path.endswith(".part")  # an unverifiable copy is never trusted
    return _unchanged(path, size, mtime_ns, sha)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_file(src: str, dest: str, sha: str | None = None) -> None:
    """Rename ``src`` to ``dest``; across filesystems copy to ``DEST.part``, verify, remove
    ``src``, then rename the copy into place (an interruption leaves a verified ``.part``
    that :func:`apply_moves` and :func:`undo_moves` finish). Never overwrites ``dest``."""
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dest):
        raise OSError(errno.EEXIST, f"{dest} exists")
    try:
        os.rename(src, dest)
        _fsync_dir(Path(dest).parent)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    part = dest + ".part"
    shutil.copy2(src, part)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    expected = sha or sha256_file(src)
    if sha256_file(part) != expected:
        os.remove(part)
        raise OSError(errno.EIO, f"copy of {src} does not match the original; nothing removed")
    _fsync_dir(Path(dest).parent)
    os.remove(src)
    _finish_part(part, dest)


def _finish_part(part: str, dest: str) -> None:
    os.replace(part, dest)
    _fsync_dir(Path(dest).parent)


def _locate(mv: Move, earlier: dict[str, list[str]]) -> tuple[str, str] | None:
    """Where a move whose source is gone left the file: ("done", dest) or ("part", dest)
    (a verified copy awaiting its rename), looking at the planned destination and those
    earlier applies recorded for the same source."""
    for dest in [mv.dest, *earlier.get(mv.src, [])]:
        if os.path.exists(dest) and (mv.sha256 is None or sha256_file(dest) == mv.sha256):
            return "done", dest
        if mv.sha256 is not None and _holds(dest + ".part", mv):
            return "part", dest
    return None


def apply_moves(moves: list[Move], target: str | os.PathLike[str], collection: str) -> MoveReport:
    """Carry out ``moves`` (see the module docs); safe to re-run after an interruption.

    A destination already taken (by an earlier apply, or anything else) is never
    overwritten, and its file is never taken for this one: the move gets a fresh name
    (``name-1.jpg``...), recorded in the manifest before anything moves."""
    target_dir = Path(target)
    if target_dir.exists() and not target_dir.is_dir():
        raise InvalidInput(f"--move-to {target_dir} exists and is not a folder")
    target_dir.mkdir(parents=True, exist_ok=True)
    previous = _manifest_entries(target_dir.resolve())
    earlier: dict[str, list[str]] = {}
    for entry in previous:
        earlier.setdefault(entry["src"], []).append(entry["dest"])
    report = MoveReport()
    plan: list[tuple[Move, str]] = []  # (move, what to do: move / done / part / missing)
    claimed: set[str] = set()
    for mv in moves:
        if os.path.lexists(mv.src):
            ours = mv.dest in earlier.get(mv.src, ()) and not os.path.lexists(mv.dest)
            if not ours or mv.dest in claimed:  # (ours: a stale .part of it is recopied)
                mv.dest = fresh_name(mv.dest, claimed)
            claimed.add(mv.dest)
            plan.append((mv, "move"))
            continue
        found = _locate(mv, earlier)
        if found is not None:
            mv.dest = found[1]
        plan.append((mv, found[0] if found else "missing"))
    recorded = [mv for mv, what in plan if what != "missing"]
    report.manifest = _write_manifest(target_dir.resolve(), recorded, collection, previous)
    keeper_ok: dict[str, bool] = {}
    for mv, what in plan:
        if what == "missing":
            report.skipped.append((mv, "missing (moved or deleted since indexing)"))
            continue
        if what == "done":
            report.already.append(mv)
            continue
        if what == "part":  # interrupted after the verified copy and the source's removal
            _finish_part(mv.dest + ".part", mv.dest)
            report.moved.append(mv)
            continue
        if not _unchanged(mv.src, mv.size, mv.mtime_ns, mv.sha256):
            report.skipped.append((mv, "changed since indexing"))
            continue
        if mv.keeper not in keeper_ok:
            keeper_ok[mv.keeper] = mv.keeper_sha256 is None or _unchanged(
                mv.keeper, mv.keeper_size, mv.keeper_mtime_ns, mv.keeper_sha256
            )
        if not keeper_ok[mv.keeper]:
            report.skipped.append((mv, f"its keeper {mv.keeper} is missing or changed"))
            continue
        try:
            move_file(mv.src, mv.dest, mv.sha256)
        except OSError as exc:
            report.skipped.append((mv, f"cannot move: {exc.strerror or exc}"))
            continue
        report.moved.append(mv)
        log.info("moved %s -> %s", mv.src, mv.dest)
    return report


@dataclass
class UndoReport:
    restored: int = 0
    not_moved: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # (original path, where the file went back) when the original path was taken again
    renamed: list[tuple[str, str]] = field(default_factory=list)


def undo_moves(manifest: str | os.PathLike[str]) -> UndoReport:
    """Move every file listed in an undo manifest back to where it was.

    A file whose original path is taken again (by another file, or by the same file moved
    by a second apply) goes back beside it under a fresh name (``name-1.jpg``); a file
    whose content changed since it was moved is left in place and reported."""
    data = read_manifest(manifest)
    report = UndoReport()
    for entry in reversed(data.get("moves", [])):
        src, dest = entry["src"], entry["dest"]
        if os.path.lexists(dest):
            where = dest
        elif _holds(dest + ".part", entry):
            where = dest + ".part"  # apply interrupted before its last rename
        else:
            if not os.path.lexists(src) and _holds(src + ".part", entry):
                _finish_part(src + ".part", src)  # an earlier undo interrupted likewise
                report.restored += 1
            else:
                report.not_moved += 1
            continue
        if not _holds(where, entry):
            report.skipped.append((dest, "changed since it was moved; left in place"))
            continue
        back = fresh_name(src)
        try:
            move_file(where, back, entry.get("sha256"))
        except OSError as exc:
            report.skipped.append((dest, f"cannot move back: {exc.strerror or exc}"))
            continue
        report.restored += 1
        if back != src:
            report.renamed.append((src, back))
    return report
