"""User commands: drive a cttv2 server through the SDK (cttv2_client).

Every command takes --url/--token (else CTTV2_URL / CTTV2_TOKEN, else `cttv2 login`'s config
file). Read commands print rich tables, or JSON with --json. Exit codes: 0 ok, 1 an API error
or a job that failed or was cancelled, 2 a usage error. Errors are one line on stderr.
"""

# Each module adds its commands to the `cttv2` group.
from cttv2_cli.user import devices, jobs, login, sweeps  # noqa: F401
