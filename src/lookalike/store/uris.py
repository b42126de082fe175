"""Service addresses: ``--store milvus`` URIs and ``--metadata redis://...`` URIs.

Parsing is strict and every refusal is a one-line ``InvalidInput`` naming the problem.
Credentials never end up in ``uri``, ``display`` or a repr: Milvus credentials come from the
environment only; a Redis password written in the URI is kept apart, in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from ..errors import InvalidInput

MILVUS_DEFAULT_PORT = 19530
REDIS_DEFAULT_PORT = 6379

_MILVUS_SCHEMES = {"http": "http", "https": "https", "tcp": "http"}
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class MilvusUri:
    """``uri`` is what pymilvus connects to (a server URL or an absolute ``.db`` path);
    ``lite`` says it is a Milvus Lite file."""

    uri: str
    display: str
    lite: bool


@dataclass(frozen=True)
class RedisUri:
    """``uri`` and ``display`` never hold a password (nor a user name); ``password`` and
    ``username`` are the ones written in the URI, if any, and stay out of the repr."""

    uri: str
    display: str
    db: int
    password: str | None = field(default=None, repr=False, compare=False)
    username: str | None = field(default=None, repr=False, compare=False)


def _quote(text: str) -> str:
    return repr(text) if len(text) <= 200 else repr(text[:200] + "...")


def _urlsplit(text: str, what: str) -> SplitResult:
    try:
        return urlsplit(text)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"; the text may hold a password
        raise InvalidInput(f"{what} cannot be parsed: {exc}") from None


def _split_netloc(netloc: str) -> tuple[str, str | None, str | None]:
    """``user:password@host:port`` -> (``host:port``, user, password); user info unquoted."""
    if "@" not in netloc:
        return netloc, None, None
    userinfo, _, hostport = netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    return hostport, unquote(user), unquote(password) if sep else None


def _host_port(hostport: str, default: int, what: str, shown: str) -> tuple[str, int]:
    """(host, port) from ``host[:port]`` or ``[v6]:port``; the host keeps IPv6 brackets."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise InvalidInput(f"{what} {shown} has an unclosed '[' in its host")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidInput(f"{what} {shown} has junk after its IPv6 host: {rest!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_ = hostport.partition(":")
        port_text = port_text_ if sep else None
    if host in ("", "[]"):
        raise InvalidInput(f"{what} {shown} names no host")
    if port_text is None:
        return host, default
    if not port_text.isdigit() or not port_text.isascii():
        raise InvalidInput(f"{what} {shown} has a bad port {port_text!r}: not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidInput(f"{what} {shown} has a bad port {port}: ports are 1 to 65535")
    return host, port


def parse_milvus_uri(text: str) -> MilvusUri:
    """``http(s)://HOST[:PORT]`` (``tcp://`` means ``http://``; port 19530 by default) or the
    path of a Milvus Lite file ending in ``.db`` (made absolute)."""
    text = text.strip()
    if not text:
        raise InvalidInput("the Milvus URI is empty; give http://HOST:PORT or a FILE.db")
    if "://" not in text:
        if not text.lower().endswith(".db"):
            raise InvalidInput(
                f"Milvus URI {_quote(text)} is neither http(s)://HOST:PORT nor a Milvus Lite "
                "file ending in .db"
            )
        path = os.path.abspath(os.path.expanduser(text))
        return MilvusUri(uri=path, display=path, lite=True)
    scheme_text, _, rest = text.partition("://")
    scheme = _MILVUS_SCHEMES.get(scheme_text.lower())
    if scheme is None:
        raise InvalidInput(
            f"Milvus URI scheme {scheme_text!r} is not supported; use http://, https:// or "
            "tcp://HOST:PORT, or a Milvus Lite FILE.db"
        )
    parts = _urlsplit(f"{scheme}://{rest}", "Milvus URI")
    hostport, user, password = _split_netloc(parts.netloc)
    shown = f"{scheme}://{hostport}"
    if user is not None or password is not None:
        raise InvalidInput(
            f"Milvus URI {shown} must not hold a user or password; set LOOKALIKE_MILVUS_TOKEN "
            "or LOOKALIKE_MILVUS_USER and LOOKALIKE_MILVUS_PASSWORD instead"
        )
    host, port = _host_port(hostport, MILVUS_DEFAULT_PORT, "Milvus URI", shown)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        junk = text[len(scheme_text) + 3 + len(parts.netloc) :]
        raise InvalidInput(f"Milvus URI {shown} has junk after HOST:PORT: {junk!r}")
    uri = f"{scheme}://{host.lower()}:{port}"
    return MilvusUri(uri=uri, display=uri, lite=False)


def milvus_credentials(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """pymilvus credentials from the environment: ``{"token": ...}`` from
    LOOKALIKE_MILVUS_TOKEN, else ``{"user", "password"}`` from LOOKALIKE_MILVUS_USER and
    LOOKALIKE_MILVUS_PASSWORD (both or neither), else ``{}``."""
    env = os.environ if env is None else env
    token = env.get("LOOKALIKE_MILVUS_TOKEN") or ""
    user = env.get("LOOKALIKE_MILVUS_USER") or ""
    password = env.get("LOOKALIKE_MILVUS_PASSWORD") or ""
    if token:
        return {"token": token}
    if user and not password:
        raise InvalidInput("LOOKALIKE_MILVUS_USER is set but LOOKALIKE_MILVUS_PASSWORD is not")
    if password and not user:
        raise InvalidInput("LOOKALIKE_MILVUS_PASSWORD is set but LOOKALIKE_MILVUS_USER is not")
    return {"user": user, "password": password} if user else {}


def _redis_db(text: str, shown: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise InvalidInput(
            f"Redis URI {shown} has a bad database {text!r}: not a non-negative integer"
        )
    return int(text)


def parse_redis_uri(text: str) -> RedisUri:
    """``redis://[[user]:password@]HOST[:PORT][/DB]``, ``rediss://`` (TLS) the same, or
    ``unix://[[user]:password@]/PATH[?db=DB]``; port 6379 and database 0 by default."""
    text = text.strip()
    scheme_text, sep, rest = text.partition("://")
    scheme = scheme_text.lower()
    if not sep or scheme not in _REDIS_SCHEMES:
        what = f"scheme {scheme_text!r}" if sep else f"{_quote(text)} (no scheme)"
        raise InvalidInput(
            f"Redis URI {what} is not supported; use redis://HOST:PORT/DB, rediss:// or "
            "unix:///PATH"
        )
    parts = _urlsplit(f"{scheme}://{rest}", "Redis URI")
    hostport, user, password = _split_netloc(parts.netloc)
    if parts.fragment:
        raise InvalidInput(f"Redis URI {scheme}://{hostport} has a fragment #{parts.fragment}")
    query = parse_qsl(parts.query, keep_blank_values=True) if parts.query else []
    if scheme == "unix":
        if hostport:
            raise InvalidInput(
                f"Redis URI unix://{hostport}{parts.path} must be unix:///PATH (no host)"
            )
        if not parts.path or parts.path == "/":
            raise InvalidInput("Redis URI unix:// names no socket path")
        path = unquote(parts.path)
        shown = f"unix://{path}"
        db = 0
        for key, value in query:
            if key != "db":
                raise InvalidInput(f"Redis URI {shown} has an unknown query part {key!r}")
            db = _redis_db(value, shown)
        if parts.query and not query:
            raise InvalidInput(f"Redis URI {shown} has junk in its query: {parts.query!r}")
        uri = f"unix://{path}?db={db}"
    else:
        shown = f"{scheme}://{hostport}"
        host, port = _host_port(hostport, REDIS_DEFAULT_PORT, "Redis URI", shown)
        if parts.query:
            raise InvalidInput(
                f"Redis URI {shown} has a query {parts.query!r}; give the database as /DB"
            )
        path = parts.path.strip("/") if parts.path else ""
        if "/" in path:
            raise InvalidInput(f"Redis URI {shown} has junk in its path: {parts.path!r}")
        db = _redis_db(path, shown) if path else 0
        uri = f"{scheme}://{host.lower()}:{port}/{db}"
    return RedisUri(
        uri=uri,
        display=uri,
        db=db,
        password=password or None,
        username=user or None,
    )


def redis_password(uri: RedisUri, env: Mapping[str, str] | None = None) -> str | None:
    """The password written in the URI, else LOOKALIKE_REDIS_PASSWORD, else None."""
    env = os.environ if env is None else env
    return uri.password or env.get("LOOKALIKE_REDIS_PASSWORD") or None
