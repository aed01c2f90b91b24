"""The artifact store's two backends with a large checkpoint (default 1 GiB): a worker's
upload and download, and the API streaming it to a client, with the API's memory meanwhile.
Prints a table with each S3 figure as a ratio of the local folder's (the floor), measured in
the same run; asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/artifact_store.py [--size-mb 1024] [--repeat 2]

The S3 side is moto's standalone server on 127.0.0.1 (the one the tests use: an emulator
written in Python that keeps objects in memory, so its throughput is a floor for a real
MinIO, not an estimate of one), or a real endpoint with --endpoint/--bucket and AWS_* set.

Rows (median of --repeat runs):
- worker upload: the local backend has nothing to do (the engine writes the file in place),
  so its floor is copying the file into the store's folder; S3: `S3Store.upload` (boto3's
  multipart upload), what the worker does after each checkpoint.
- worker download: a resume on another host. Local: copying it out of the folder; S3:
  `S3Store.fetch`.
- API download: `GET /v1/jobs/{id}/artifacts/...` from `cttv2 serve` configured with each
  backend, the whole file through httpx (sha256 checked), and the API process's RSS sampled
  every 50 ms: before, and its peak during the download.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.artifacts.store import S3Store, job_key  # noqa: E402
from tests.support.s3 import s3_server  # noqa: E402
from tests.support.specs import TINY_FP  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

NAME = "checkpoints/big.pt"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_file(path: Path, size_mb: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for i in range(size_mb):
            chunk = block[:-8] + i.to_bytes(8, "big")  # no two MiB alike
            fh.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def api_download(stack: Stack, token: str, url: str, sha256: str) -> tuple[float, float, float]:
    """(seconds, API RSS before in MB, API RSS peak in MB) for one full download."""
    assert stack.api is not None
    pid = stack.api.popen.pid
    client = stack.client(token)
    client.get(url, headers={"Range": "bytes=0-0"}).raise_for_status()  # warm up
    base = rss_mb(pid)
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    got = hashlib.sha256()
    start = time.perf_counter()
    with client.stream("GET", url, timeout=1200) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes(1 << 20):
            got.update(chunk)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if not (got.hexdigest() == r.headers["x-checksum-sha256"] == sha256):
        raise SystemExit(f"checksum mismatch downloading {url}")
    return seconds, base, peak[0]


def serve_with(root: Path, env: dict[str, str], sha256: str, size: int, place) -> tuple[Stack, str, str]:
    """A `cttv2 serve` (no worker) with one queued job whose registered artifact is the file,
    put in place by `place(job_id)`."""
    stack = Stack.create("embedded", root, env)
    stack.start_api()
    token = stack.create_user("bench")
    job = stack.client(token).post("/v1/jobs", json=TINY_FP).json()  # no worker: it stays queued
    place(job["id"])
    stack.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, :n, 'checkpoint', :s, :h, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        j=job["id"],
        n=NAME,
        s=size,
        h=sha256,
    )
    return stack, token, f"/v1/jobs/{job['id']}/artifacts/{NAME}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--endpoint", help="a real S3 endpoint (default: a moto server started here)")
    parser.add_argument("--bucket", help="with --endpoint: an existing bucket")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cttv2-store-bench-"))
    try:
        with s3_server(tmp / "moto") as moto:
            if args.endpoint:
                s3_env = {"AWS_ENDPOINT_URL": args.endpoint}
                bucket = args.bucket
            else:
                s3_env, bucket = moto.env, moto.bucket
            os.environ.update(s3_env)
            run(tmp, args.size_mb, args.repeat, s3_env, bucket)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, size_mb: int, repeat: int, s3_env: dict[str, str], bucket: str) -> None:
    size = size_mb << 20
    source = tmp / "big.pt"
    t0 = time.perf_counter()
    sha256 = make_file(source, size_mb)
    print(f"wrote a {size_mb} MiB file in {time.perf_counter() - t0:.1f} s (sha256 {sha256[:12]}...)")
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    store = S3Store(bucket, prefix, tmp / "scratch")
    folder = tmp / "local-store"
    folder.mkdir()
    key = job_key(1, NAME)

    rows: dict[str, tuple[list[float], list[float]]] = {}

    def measure(label: str, local_fn, s3_fn) -> None:
        local, remote = [], []
        for _ in range(repeat):
            local.append(timed(local_fn))
            remote.append(timed(s3_fn))
        rows[label] = (local, remote)

    measure(
        "worker upload (after a checkpoint)",
        lambda: shutil.copyfile(source, folder / "big.pt"),
        lambda: store.upload(source, key, sha256),
    )
    measure(
        "worker download (resume elsewhere)",
        lambda: shutil.copyfile(folder / "big.pt", tmp / "out-local.pt"),
        lambda: store.fetch(key, tmp / "out-s3.pt"),
    )
    for copy in (tmp / "out-local.pt", tmp / "out-s3.pt", folder / "big.pt"):
        copy.unlink(missing_ok=True)

    # The API with each backend.
    api: dict[str, list[tuple[float, float, float]]] = {}
    local_root = tmp / "api-local"

    def place_local(job_id: int) -> None:
        target = local_root / "artifacts" / "jobs" / str(job_id) / NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    stack, token, url = serve_with(local_root, {}, sha256, size, place_local)
    try:
        api["file"] = [api_download(stack, token, url, sha256) for _ in range(repeat)]
    finally:
        stack.destroy()
    s3_prefix = f"bench-api-{uuid.uuid4().hex[:6]}"
    env = {**s3_env, "CTTV2_ARTIFACT_URL": f"s3://{bucket}/{s3_prefix}"}

    def place_s3(job_id: int) -> None:
        S3Store(bucket, s3_prefix, tmp / "scratch").upload(source, job_key(job_id, NAME), sha256)

    stack, token, url = serve_with(tmp / "api-s3", env, sha256, size, place_s3)
    try:
        api["s3"] = [api_download(stack, token, url, sha256) for _ in range(repeat)]
    finally:
        stack.destroy()

    print()
    print(f"{size_mb} MiB, median of {repeat} runs; ratio = S3 throughput / local throughput (same run)")
    print()
    print("| operation | local folder (floor) MB/s | S3 MB/s | S3 / floor |")
    print("|---|---:|---:|---:|")
    for label, (local, remote) in rows.items():
        lo, s3 = size_mb / statistics.median(local), size_mb / statistics.median(remote)
        print(f"| {label} | {lo:.0f} | {s3:.0f} | {s3 / lo:.2f} |")
    lo = size_mb / statistics.median(r[0] for r in api["file"])
    s3 = size_mb / statistics.median(r[0] for r in api["s3"])
    print(f"| API download (GET .../artifacts/{NAME}) | {lo:.0f} | {s3:.0f} | {s3 / lo:.2f} |")
    print()
    print("| API serving it | RSS before MB | RSS peak MB | peak - before MB |")
    print("|---|---:|---:|---:|")
    for backend, runs in api.items():
        before = statistics.median(r[1] for r in runs)
        peak = max(r[2] for r in runs)
        print(f"| {backend} backend | {before:.0f} | {peak:.0f} | {peak - before:+.0f} |")


if __name__ == "__main__":
    sys.exit(main())
