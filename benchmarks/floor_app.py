"""The floor for benchmarks/load.py: a bare FastAPI route doing one primary-key read on the
same database, with the same engine settings and the same server (one uvicorn process), and
nothing else (no auth, no middleware, no models)."""

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
