"""``to_milvus``: a ``--where`` filter as a Milvus expression selects, on Milvus Lite, exactly
the items ``Where.matches`` accepts, over varied metadata (nested objects, ints and floats,
strings that look like numbers, booleans, nulls, missing keys, quotes and backslashes); what
Milvus cannot express exactly is refused with ``MilvusFilterError``."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymilvus", reason="Milvus filters need pymilvus ([milvus] extra)")
pytest.importorskip("milvus_lite", reason="these tests run on Milvus Lite")

from pymilvus import DataType, MilvusClient  # noqa: E402

from lookalike.errors import InvalidInput  # noqa: E402
from lookalike.search.milvus_filter import MilvusFilterError, label_expr, to_milvus  # noqa: E402
from lookalike.search.where import parse_where  # noqa: E402

LABELS = [None, None, "red", "blue", "Red", 'a"q', "b\\s", "it's", "é", "10", "tab\there"]
STRINGS = ["", "Oslo", "Rome", "12", "12.0", "say \"hi\"", "C:\\dir", "it's", "é😀", "tab\there",
           "a\\\"b", "zz", "m", "x"]  # fmt: skip
NUMBERS = [0, 1, -2.5, 12, 12.0, 13.5, 19.99, 20, -1, 4, 2**53 - 1, 1e-7, 4.5, 100]


def _value(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.4:
        return rng.choice(NUMBERS)
    if kind < 0.7:
        return rng.choice(STRINGS)
    if kind < 0.8:
        return rng.choice([True, False])
    if kind < 0.88:
        return None
    if kind < 0.94:
        return [rng.choice(NUMBERS), rng.choice(STRINGS)]
    return {"x": rng.choice(NUMBERS)}


def _metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key in ("price", "name", "n", "flag", "count"):
        if rng.random() < 0.75:
            meta[key] = _value(rng)
    shop = rng.random()
    if shop < 0.6:
        meta["shop"] = {
            k: v
            for k, v in (
                ("city", rng.choice([*STRINGS[:4], None, 3])),
                ("rating", rng.choice([1, 3.5, 4, 5, "4", None])),
                ("geo", {"lat": rng.choice([-33.9, 0, 51.5, "0"])} if rng.random() < 0.6 else 7),
            )
            if rng.random() < 0.8
        }
    elif shop < 0.75:
        meta["shop"] = rng.choice(["Oslo", 4, None, ["Oslo"]])
    return meta


ITEMS = {
    f"item-{i:03d}": (rng.choice(LABELS), _metadata(rng))
    for rng in [random.Random(20240611)]
    for i in range(200)
}

EXACT = [
    "price = 12",
    "price == 12.0",
    "price != 12",
    "price < 20",
    "price <= 12",
    "price > 12.5",
    "price >= 0",
    "price = '12'",
    "price < '2'",
    "price in (12, 13.5, '12')",
    "price in (0, 1)",
    "not price = 12",
    "not price in (12, '12', 4.5)",
    "flag = 1",
    "flag = 0",
    "n < -1",
    "n = -2.5",
    "count = 9007199254740991",
    "name = ''",
    "name > 'm'",
    "name = 'say \"hi\"'",
    "name = 'C:\\\\dir'",
    "name = 'it\\'s'",
    "name = 'é😀'",
    "name = 'tab\there'",
    "name = 'a\\\\\\\"b'",
    "name != 'Oslo'",
    "label = 'red'",
    "label != 'red'",
    "label < 'm'",
    "label <= 'Red'",
    "label > 'b'",
    "label >= 'b'",
    "label = ''",
    "label < ''",
    "label != ''",
    "label in ('red', 'blue', '')",
    "label = 10",
    "label in (10)",
    "label exists",
    "label = 'a\"q'",
    "label = 'b\\\\s'",
    "not label = 'red'",
    "not label < 'm'",
    "not label >= 'b'",
    "not label != 'Red'",
    "not label in ('red', 'é')",
    "not label exists",
    "not label = 10",
    "not label = ''",
    "shop.city = 'Oslo'",
    "shop.city in ('Oslo', 'Rome', 3)",
    "shop.rating >= 4",
    "shop.rating = '4'",
    "shop.geo.lat < 0",
    "shop.geo.lat = '0'",
    "shop.geo.lat.deeper = 1",
    "not shop.city = 'Oslo'",
    "not shop.geo.lat = 0",
    "(price < 20 or shop.city = 'Rome') and not label = 'blue'",
    "not (price = 12 or label in ('red'))",
    "not (not price < 20)",
    "not (label exists and price = 12)",
    "price < 20 and price > 10 or name = 'x'",
    "not (label < 'c' or (name = 'zz' and not price in (1, '12')))",
]

REFUSED = [
    "price exists",
    "not price exists",
    "shop.geo exists",
    "not price < 20",
    "not price != 12",
    "not (price = 1 and shop.rating > 3)",
    "name = 'a\nb'",
    "label = 'a\rb'",
    "price < 1e999",
    "count = 9007199254740993",
    "price in (1, 9007199254740992)",
]


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusClient]:
    db: Path = tmp_path_factory.mktemp("milvus") / "filters.db"
    client = MilvusClient(str(db))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("label", DataType.VARCHAR, max_length=1024)
    schema.add_field("meta", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_collection("items", schema=schema, index_params=index, consistency_level="Strong")
    rows = [
        {"id": i, "vector": [1.0, 0.0, 0.0, 0.0], "label": label or "", "meta": meta}
        for i, (label, meta) in ITEMS.items()
    ]
    client.insert("items", rows)
    yield client
    client.close()


def selected(milvus: MilvusClient, expr: str) -> set[str]:
    rows = milvus.query("items", filter=expr, output_fields=["id"], limit=10_000)
    return {row["id"] for row in rows}


def test_the_items_are_varied() -> None:
    metas = [meta for _, meta in ITEMS.values()]
    assert sum(label is None for label, _ in ITEMS.values()) > 20
    prices = [m["price"] for m in metas if "price" in m]
    assert {type(p) for p in prices} == {int, float, str, bool, type(None), list, dict}
    assert sum("price" not in m for m in metas) > 20
    assert any(isinstance(m.get("shop"), dict) and "geo" in m["shop"] for m in metas)


@pytest.mark.parametrize("text", EXACT)
def test_milvus_selects_what_where_matches(milvus: MilvusClient, text: str) -> None:
    where = parse_where(text)
    expected = {i for i, (label, meta) in ITEMS.items() if where.matches(label, meta)}
    assert selected(milvus, to_milvus(where)) == expected


def test_the_table_selects_something_and_not_everything() -> None:
    counts = [
        sum(parse_where(t).matches(label, meta) for label, meta in ITEMS.values()) for t in EXACT
    ]
    assert sum(0 < c < len(ITEMS) for c in counts) >= 0.8 * len(EXACT)


@pytest.mark.parametrize("text", REFUSED)
def test_what_milvus_cannot_express_is_refused(text: str) -> None:
    with pytest.raises(MilvusFilterError) as err:
        to_milvus(parse_where(text))
    assert isinstance(err.value, InvalidInput)


@pytest.mark.parametrize("label", ["red", "Red", 'a"q', "b\\s", "it's", "é", "10", "", "none"])
def test_label_expr(milvus: MilvusClient, label: str) -> None:
    expected = {i for i, (lab, _) in ITEMS.items() if lab == label}
    assert selected(milvus, label_expr(label)) == expected


def test_no_not_and_no_exists_in_the_output() -> None:
    """Milvus Lite evaluates neither; ``not in`` and ``!=`` it does."""
    for text in EXACT:
        expr = to_milvus(parse_where(text))
        assert "not (" not in expr and "exists" not in expr
