"""Checks made on a path before any byte of it is read: can the catalog store its name, is
it a regular file, a broken symlink, too big."""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["BAD_NAME", "catalog_text", "file_problem", "stat_problem"]

BAD_NAME = "the name is not valid UTF-8 (rename the file or folder to index it)"


def catalog_text(text: str) -> str:
    """``text`` as the catalog can store it: a path holding bytes that are not UTF-8
    (``surrogateescape`` characters from the file system) gets U+FFFD in their place."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode(
            "utf-8", "surrogateescape" if _escaped(text) else "surrogatepass"
        ).decode("utf-8", "replace")
    return text


def _escaped(text: str) -> bool:
    return all(not 0xD800 <= ord(c) < 0xDC80 for c in text if 0xD800 <= ord(c) <= 0xDFFF)


def stat_problem(path: str, exc: OSError) -> tuple[str, str]:
    if os.path.islink(path):
        if exc.errno == errno.ELOOP:
            return "broken-link", "symlink loop"
        return "broken-link", f"symlink to a missing target ({exc.strerror or exc})"
    return "unreadable", exc.strerror or str(exc)


def file_problem(st: os.stat_result, max_bytes: int) -> tuple[str, str] | None:
    """``(reason, detail)`` if a file with this ``stat`` must not be read, else None."""
    if not stat.S_ISREG(st.st_mode):
        return "not-a-file", f"a {_KINDS.get(stat.S_IFMT(st.st_mode), 'special file')}, not a file"
    if st.st_size > max_bytes:
        return "too-big", f"{st.st_size / 2**20:,.0f} MiB, over the {max_bytes / 2**20:g} MiB limit"
    return None


_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "folder",
}
