"""Service URIs: what --store milvus and --metadata redis://... accept, and how each bad one is
refused (one line naming the problem, never echoing a password)."""

from __future__ import annotations

import os

import pytest

from lookalike.errors import InvalidInput
from lookalike.store.uris import (
    milvus_credentials,
    parse_milvus_uri,
    parse_redis_uri,
    redis_password,
)


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("http://milvus:19530", "http://milvus:19530"),
        ("http://milvus", "http://milvus:19530"),
        ("http://Milvus.Example.COM:8080/", "http://milvus.example.com:8080"),
        ("https://milvus.example.com", "https://milvus.example.com:19530"),
        ("tcp://10.0.0.5:19530", "http://10.0.0.5:19530"),
        ("HTTP://h:1", "http://h:1"),
        ("http://[::1]:19531", "http://[::1]:19531"),
        ("  http://h:65535  ", "http://h:65535"),
    ],
)
def test_milvus_server_uris(text: str, uri: str) -> None:
    parsed = parse_milvus_uri(text)
    assert (parsed.uri, parsed.display, parsed.lite) == (uri, uri, False)


def test_a_milvus_lite_file_is_made_absolute(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = parse_milvus_uri("vectors.db")
    assert parsed.lite and parsed.uri == os.path.join(str(tmp_path), "vectors.db")
    assert parse_milvus_uri("/data/x/milvus.db").uri == "/data/x/milvus.db"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("ftp://h:19530", "scheme 'ftp' is not supported"),
        ("grpc://h:19530", "scheme 'grpc' is not supported"),
        ("http://", "names no host"),
        ("http://:19530", "names no host"),
        ("http://h:port", "bad port 'port': not a number"),
        ("http://h:0", "bad port 0"),
        ("http://h:65536", "bad port 65536"),
        ("http://h:-1", "bad port '-1'"),
        ("http://root:Milvus@h:19530", "LOOKALIKE_MILVUS_TOKEN"),
        ("http://token@h:19530", "must not hold a user or password"),
        ("http://h:19530/db1", "junk after HOST:PORT: '/db1'"),
        ("http://h:19530?x=1", "junk after HOST:PORT"),
        ("vectors.sqlite", "nor a Milvus Lite file ending in .db"),
        ("localhost:19530", "neither http(s)://HOST:PORT"),
        ("http://[::1:19530", "cannot be parsed"),
    ],
)
def test_bad_milvus_uris_are_refused_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_milvus_uri(text)
    message = str(caught.value)
    assert problem in message and "\n" not in message
    assert "Milvus@" not in message and "root:" not in message


def test_milvus_credentials_come_from_the_environment() -> None:
    assert milvus_credentials({}) == {}
    assert milvus_credentials({"LOOKALIKE_MILVUS_TOKEN": "root:Milvus"}) == {"token": "root:Milvus"}
    env = {"LOOKALIKE_MILVUS_USER": "root", "LOOKALIKE_MILVUS_PASSWORD": "pw"}
    assert milvus_credentials(env) == {"user": "root", "password": "pw"}
    with pytest.raises(InvalidInput, match="LOOKALIKE_MILVUS_USER is set but"):
        milvus_credentials({"LOOKALIKE_MILVUS_USER": "root"})
    with pytest.raises(InvalidInput, match="LOOKALIKE_MILVUS_PASSWORD is set but"):
        milvus_credentials({"LOOKALIKE_MILVUS_PASSWORD": "pw"})


@pytest.mark.parametrize(
    ("text", "uri", "db"),
    [
        ("redis://cache", "redis://cache:6379/0", 0),
        ("redis://cache:6380", "redis://cache:6380/0", 0),
        ("redis://cache:6380/", "redis://cache:6380/0", 0),
        ("redis://cache:6380/7", "redis://cache:6380/7", 7),
        ("rediss://cache.example.com/2", "rediss://cache.example.com:6379/2", 2),
        ("REDIS://Cache:1/1", "redis://cache:1/1", 1),
        ("redis://[::1]:6379/3", "redis://[::1]:6379/3", 3),
        ("unix:///run/redis.sock", "unix:///run/redis.sock?db=0", 0),
        ("unix:///run/redis.sock?db=4", "unix:///run/redis.sock?db=4", 4),
    ],
)
def test_redis_uris(text: str, uri: str, db: int) -> None:
    parsed = parse_redis_uri(text)
    assert (parsed.uri, parsed.display, parsed.db, parsed.password) == (uri, uri, db, None)


@pytest.mark.parametrize(
    ("text", "password", "username"),
    [
        ("redis://:s3cret@cache:6379/0", "s3cret", None),
        ("redis://app:s3cret@cache/0", "s3cret", "app"),
        ("rediss://app:p%40ss%3Aword@cache", "p@ss:word", "app"),
        ("unix://:s3cret@/run/redis.sock", "s3cret", None),
    ],
)
def test_a_redis_password_is_kept_apart(text: str, password: str, username: str | None) -> None:
    parsed = parse_redis_uri(text)
    assert parsed.password == password and parsed.username == username
    for shown in (parsed.uri, parsed.display, repr(parsed), str(parsed)):
        assert password not in shown and "s3cret" not in shown and "%40" not in shown
    assert "@" not in parsed.uri


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cache:6379", "no scheme"),
        ("http://cache:6379", "scheme 'http' is not supported"),
        ("redis://", "names no host"),
        ("redis://:pw@:6379", "names no host"),
        ("redis://cache:abc", "bad port 'abc': not a number"),
        ("redis://cache:0", "bad port 0"),
        ("redis://cache:99999", "bad port 99999"),
        ("redis://cache/x", "bad database 'x'"),
        ("redis://cache/-1", "bad database '-1'"),
        ("redis://cache/1/2", "junk in its path"),
        ("redis://cache/0?ssl=true", "has a query 'ssl=true'"),
        ("redis://cache/0#frag", "fragment"),
        ("unix://host/run/redis.sock", "no host"),
        ("unix://", "no socket path"),
        ("unix:///run/redis.sock?db=x", "bad database 'x'"),
        ("unix:///run/redis.sock?timeout=3", "unknown query part 'timeout'"),
    ],
)
def test_bad_redis_uris_are_refused_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_redis_uri(text)
    message = str(caught.value)
    assert problem in message and "\n" not in message
    assert "pw@" not in message


def test_redis_password_prefers_the_uri_then_the_environment() -> None:
    env = {"LOOKALIKE_REDIS_PASSWORD": "from-env"}
    assert redis_password(parse_redis_uri("redis://:in-uri@h"), env) == "in-uri"
    assert redis_password(parse_redis_uri("redis://h"), env) == "from-env"
    assert redis_password(parse_redis_uri("redis://h"), {}) is None
