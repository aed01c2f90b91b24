"""Build-time check of the worker image: aihwkit reports CUDA compiled in, and torch and aihwkit
are the versions the image pins (the extension is compiled against that exact torch).

docker/worker.Dockerfile runs it as its last install step; no GPU is needed (the check reads
what was compiled, not what is visible). Exits 1 and names each problem otherwise.
"""

from __future__ import annotations

import argparse
import sys


def problems(want_torch: str | None, want_aihwkit: str | None) -> list[str]:
    import aihwkit
    import torch
    from aihwkit.simulator.rpu_base import cuda

    found = []
    if not cuda.is_compiled():
        found.append(
            "aihwkit has no CUDA compiled in (the CPU-only wheel from PyPI was installed "
            "instead of the one built in the aihwkit-build stage)"
        )
    if torch.version.cuda is None:
        found.append(f"torch {torch.__version__} is a CPU build")
    if want_torch and torch.__version__.split("+")[0] != want_torch:
        found.append(f"torch is {torch.__version__}, the image pins {want_torch}")
    if want_aihwkit and aihwkit.__version__.split("+")[0] != want_aihwkit:
        found.append(f"aihwkit is {aihwkit.__version__}, the image pins {want_aihwkit}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", help="expected torch version, e.g. 2.10.0")
    parser.add_argument("--aihwkit", help="expected aihwkit version, e.g. 1.1.0")
    args = parser.parse_args(argv)

    found = problems(args.torch, args.aihwkit)
    if found:
        for line in found:
            print(f"worker image check failed: {line}", file=sys.stderr)
        return 1

    import aihwkit
    import torch

    print(
        f"worker image ok: aihwkit {aihwkit.__version__} with CUDA compiled in, "
        f"torch {torch.__version__} (CUDA {torch.version.cuda})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
