"""Artifact downloads stream from disk: the API's memory stays flat while a large file (an
analog Swin-T checkpoint is ~2 GB) goes out. Prints a table; asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/downloads.py [size_mb]

The local store only; benchmarks/artifact_store.py (whose helpers this uses) compares it
with S3.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.artifact_store import NAME, api_download, make_file, serve_with  # noqa: E402


def main(size_mb: int = 1024) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "big.pt"
        sha256 = make_file(source, size_mb)

        def place(job_id: int) -> None:
            target = root / "stack" / "artifacts" / "jobs" / str(job_id) / NAME
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)

        stack, token, url = serve_with(root / "stack", {}, sha256, size_mb << 20, place)
        try:
            seconds, base, peak = api_download(stack, token, url, sha256)  # exits on a checksum mismatch
            t0 = time.perf_counter()
            tail = stack.client(token).get(url, headers={"Range": "bytes=-1048576"})
            tail_ms = (time.perf_counter() - t0) * 1000
            print(
                f"{'file':>10} {'MB/s':>8} {'API RSS before':>15} {'API RSS peak':>13} "
                f"{'sha256 ok':>10} {'last 1 MB (Range)':>18}"
            )
            print(
                f"{size_mb:>7} MB {size_mb / seconds:>8.0f} {base:>12.0f} MB {peak:>10.0f} MB {'True':>10} "
                f"{tail.status_code:>6} in {tail_ms:.0f} ms"
            )
        finally:
            stack.destroy()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
