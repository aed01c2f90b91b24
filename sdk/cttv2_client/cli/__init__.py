"""The `cttv2` command's user side: drive a cttv2 server through the SDK.

Installed with the `cli` extra (`pip install 'cttv2-client[cli]'`: click, rich, pyyaml); this
package is the only part of cttv2_client that imports them, so `import cttv2_client` stays
light. `cttv2_client.cli.app` holds the one click group, `cli`; the command modules (jobs,
sweeps, devices, weights, presets, login, export) add their commands to it, and other installed
packages add theirs through the `cttv2.commands` entry-point group (the server package declares
`serve`, `worker`, `db`, `admin` and `train` that way).

Every user command takes --url/--token (else CTTV2_URL / CTTV2_TOKEN, else `cttv2 login`'s
config file). Read commands print rich tables, or JSON with --json. Exit codes (README, "CLI"):
0 ok; 1 an API error, or a job (sweep, weights check) that failed or was cancelled; 2 a usage
error (bad option or argument, unreadable spec file, no server URL configured); Ctrl-C: 1
(click's "Aborted!"), 130 while `submit --wait`, `rerun --wait` or `wait` waits. Errors are one
line on stderr, starting `cttv2: `.
"""

from __future__ import annotations

import sys

CLI_EXTRA_HINT = "pip install 'cttv2-client[cli]'"


def main() -> None:
    """The `cttv2` console script of the SDK: every command installed (see cttv2_client.cli.app)."""
    try:
        from cttv2_client.cli.app import main as run
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich", "yaml"):
            raise
        sys.stderr.write(
            f"cttv2: the command line needs the SDK's `cli` extra ({exc.name} is missing): {CLI_EXTRA_HINT}\n"
        )
        sys.exit(1)
    run()
