"""A FastAPI service with an AsyncCacheNode in front of a slow database.

Run two instances on one Redis and one database file, then write through one and read
through the other:

    export REDIS_URL=redis://127.0.0.1:6379/0 CACHELAB_DB=/tmp/items.db
    uvicorn examples.fastapi_app:app --port 8001 &
    uvicorn examples.fastapi_app:app --port 8002 &
    curl -X PUT localhost:8001/items/1 -H 'content-type: application/json' -d '"apple"'
    curl localhost:8002/items/1          # "apple": loaded once, then served from memory

The database is SQLite with a deliberate delay per query (``CACHELAB_DB_DELAY``, 50 ms by
default). A write goes to the database, then ``invalidate`` tells every instance; a read
is ``get_or_load``: a local hit, else Redis, else the database (once per instance).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import Body, FastAPI, HTTPException

from cachelab import AsyncCacheNode

DB_PATH = os.environ.get("CACHELAB_DB", "items.db")
DB_DELAY = float(os.environ.get("CACHELAB_DB_DELAY", "0.05"))
NAME = os.environ.get("CACHELAB_NODE", f"api-{os.getpid()}")


def _query(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """One slow query on the shared database file."""
    time.sleep(DB_DELAY)
    with sqlite3.connect(DB_PATH, timeout=5) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, value TEXT)")
        return db.execute(sql, args).fetchall()


async def load_item(item_id: str) -> str | None:
    """The database read behind the cache (run off the event loop)."""
    rows = await asyncio.to_thread(_query, "SELECT value FROM items WHERE id = ?", item_id)
    return rows[0][0] if rows else None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One node per process, subscribed before the first request, closed at shutdown."""
    client = aioredis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    async with AsyncCacheNode(client, name=NAME, namespace="items") as node:
        app.state.node = node
        yield
    await client.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(item_id: str) -> Any:
    """A local hit, else Redis, else the database."""
    value = await app.state.node.get_or_load(f"item:{item_id}", lambda: load_item(item_id))
    # (an async loader's coroutine is awaited; a plain function's value is taken as it is)
    if value is None:
        raise HTTPException(404, f"no item {item_id}")
    return value


@app.put("/items/{item_id}")
async def write_item(item_id: str, value: str = Body()) -> dict[str, str]:
    """Write the database, then drop the cached copy on every instance."""
    sql = "INSERT OR REPLACE INTO items (id, value) VALUES (?, ?)"
    await asyncio.to_thread(_query, sql, item_id, value)
    await app.state.node.invalidate(f"item:{item_id}")
    return {"id": item_id, "value": value}


@app.get("/stats")
async def stats() -> dict[str, Any]:
    """This instance's node counters."""
    return dict(app.state.node.stats.to_dict())


@app.get("/health")
async def health() -> dict[str, bool]:
    """Ready once the node is subscribed."""
    return {"coherent": bool(app.state.node.coherent)}
