"""Distributed mode: vectors in Milvus, item metadata in Redis, any number of stateless API
replicas (see docs/distributed.md).

- ``config.py``: the remote store a collection folder remembers (``collection.json``'s
  ``remote``), and opening its parts with credentials from the environment;
- ``publisher.py``: publishing the catalog's outbox (local changes) to Milvus and Redis;
- ``search.py``: searching Milvus, hits completed from Redis or the local catalog;
- ``served.py``: the collection a stateless replica serves (no local state at all).
"""
