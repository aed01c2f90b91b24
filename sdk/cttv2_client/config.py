"""Where the client finds its server and token: arguments, then the CTTV2_URL / CTTV2_TOKEN
environment variables, then the config file `cttv2 login` writes.

The file is TOML in the user's config dir ($CTTV2_CONFIG, else $XDG_CONFIG_HOME/cttv2/config.toml,
else ~/.config/cttv2/config.toml; %APPDATA%\\cttv2\\config.toml on Windows). It holds a token,
so it is written with mode 0600.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from cttv2_client.errors import ConfigError

URL_ENV = "CTTV2_URL"
TOKEN_ENV = "CTTV2_TOKEN"
CONFIG_ENV = "CTTV2_CONFIG"


@dataclass
class Settings:
    url: str | None = None
    token: str | None = None


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "cttv2" / "config.toml"


def load_file(path: Path | None = None) -> Settings:
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    url, token = data.get("url"), data.get("token")
    return Settings(url=url if isinstance(url, str) else None, token=token if isinstance(token, str) else None)


def resolve(url: str | None = None, token: str | None = None) -> Settings:
    """Arguments win over the environment, which wins over the config file."""
    url = url or os.environ.get(URL_ENV) or None
    token = token or os.environ.get(TOKEN_ENV) or None
    if url is None or token is None:
        saved = load_file()
        url = url or saved.url
        token = token or saved.token
    if not url:
        raise ConfigError(
            f"no server URL: pass base_url, set {URL_ENV}, or run `cttv2 login` (config: {config_path()})"
        )
    return Settings(url=url.rstrip("/"), token=token)


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write the config file atomically, readable by the user only."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# written by `cttv2 login`; holds an API token: keep it private\n"]
    for key in ("url", "token"):
        value = getattr(settings, key)
        if value is not None:
            lines.append(f"{key} = {_toml_string(value)}\n")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # in case the file existed with wider permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _toml_string(value: str) -> str:
    # A JSON string without ASCII escaping is a valid TOML basic string (\" \\ \n \uXXXX).
    return json.dumps(value, ensure_ascii=False)
