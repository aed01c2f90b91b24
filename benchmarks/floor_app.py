"""The floor for benchmarks/load.py: a bare FastAPI route doing one primary-key read on the
same database, with the same engine settings and the same server (one uvicorn process), and
nothing else (no auth, no middleware, no models).

/floor/{id} is the floor of issue 15's goals (its read is a transaction: BEGIN, the SELECT,
ROLLBACK). /floor-autocommit/{id} is the same read in autocommit (one round trip, as the API's
own reads): the lower floor, printed beside it so that a ratio below 1 against the first is
not mistaken for beating bare FastAPI."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text

from service.core.config import get_settings
from service.core.db import make_engine

engine = make_engine(get_settings())
app = FastAPI()


@app.get("/floor/{job_id}")
def read_one(job_id: int) -> dict:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, status FROM jobs WHERE id = :id"), {"id": job_id}).first()
    return {"id": row[0], "status": row[1]} if row else {}


autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")


@app.get("/floor-autocommit/{job_id}")
def read_one_autocommit(job_id: int) -> dict:
    with autocommit.connect() as conn:
        row = conn.execute(text("SELECT id, status FROM jobs WHERE id = :id"), {"id": job_id}).first()
    return {"id": row[0], "status": row[1]} if row else {}
