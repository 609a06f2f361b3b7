"""How CLI commands reach the running hub: its service API, found through the data dir.

The server writes ``server.json`` (URLs, CA file, hub host) into its data dir at start, and the
owner credential (``owner.credential``, mode 0600) at first start. Commands sign each request
with a short-lived SAS token of the ``iothubowner`` policy.
"""

from __future__ import annotations

import argparse
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from iotsec.errors import IotsecError
from iotsec.protocol import generate_sas_token

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_DATA_DIR",
    "CliError",
    "ServiceClient",
    "add_data_dir_flag",
    "data_dir_from",
    "server_info",
]

DEFAULT_DATA_DIR = Path("iotsec-data")
API_VERSION = "2021-04-12"


class CliError(IotsecError):
    """A CLI command could not do its work; the message says what to do."""


def add_data_dir_flag(parser: argparse.ArgumentParser, *, leaf: bool = True) -> None:
    """``--data-dir`` on ``parser``; on leaf commands it only overrides when given."""
    parser.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS if leaf else None,
        help="the hub's data dir (default: $IOTSEC_DATA_DIR, else ./iotsec-data)",
    )


def data_dir_from(flag: str | Path | None, environ: dict[str, str] | None = None) -> Path:
    """``--data-dir`` if given, else ``IOTSEC_DATA_DIR``, else ``./iotsec-data``."""
    env = os.environ if environ is None else environ
    if flag:
        return Path(flag)
    return Path(env["IOTSEC_DATA_DIR"]) if env.get("IOTSEC_DATA_DIR") else DEFAULT_DATA_DIR


def server_info(data_dir: Path) -> dict[str, Any]:
    """What the server wrote about itself in ``server.json``.

    Raises:
        CliError: no hub has started with this data dir.
    """
    path = data_dir / "server.json"
    try:
        info: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise CliError(
            f"no hub has run with data dir {data_dir} (no {path.name}); start one "
            "with `iotsec up --data-dir DIR` or set IOTSEC_DATA_DIR"
        ) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    return info


def _credential(data_dir: Path) -> dict[str, str]:
    path = data_dir / "owner.credential"
    try:
        text = path.read_text("utf-8").strip()
    except OSError as exc:
        raise CliError(f"cannot read the owner credential {path}: {exc.strerror}") from None
    parts = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    if not {"HostName", "SharedAccessKeyName", "SharedAccessKey"} <= set(parts):
        raise CliError(f"{path} is not a policy connection string")
    return parts


@dataclass
class ServiceClient:
    """Calls the running hub's service API with the owner credential."""

    data_dir: Path
    timeout: float = 30.0

    def __post_init__(self) -> None:
        # httpx is imported when a command calls the hub, not by every ``iotsec`` command (the
        # long-running agent would keep its megabytes resident for nothing).
        import httpx  # noqa: PLC0415

        self.info = server_info(self.data_dir)
        self._credential = _credential(self.data_dir)
        self._client: httpx.Client = httpx.Client(
            base_url=self.info["service_url"],
            verify=ssl.create_default_context(cafile=str(self.info["ca_file"])),
            timeout=self.timeout,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _token(self) -> str:
        return generate_sas_token(
            self._credential["HostName"],
            self._credential["SharedAccessKey"],
            int(time.time()) + 300,
            self._credential["SharedAccessKeyName"],
        )

    def request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """One service API call; returns the decoded JSON body (None for 204).

        Raises:
            CliError: the hub is not reachable, or it refused the call (its reason included).
        """
        sent = {"Authorization": self._token(), **(headers or {})}
        content = None
        if body is not None:
            content = orjson.dumps(body)
            sent["Content-Type"] = "application/json"
        try:
            response = self._client.request(
                method, path, params={"api-version": API_VERSION}, content=content, headers=sent
            )
        except _http_error() as exc:
            raise CliError(
                f"the hub at {self.info['service_url']} is not reachable ({exc}); "
                "is `iotsec up` running?"
            ) from None
        if response.status_code >= 400:
            try:
                reason = response.json().get("Message", response.text)
            except ValueError:
                reason = response.text
            raise CliError(f"{method} {path}: {response.status_code} {reason}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def _http_error() -> type[Exception]:
    import httpx  # noqa: PLC0415  # loaded already by ServiceClient; see __post_init__

    return httpx.HTTPError
