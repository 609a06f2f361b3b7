"""A bare MQTT client on real TLS for end-to-end tests: exact bytes, no retries, no SDK logic."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path
from typing import Any

from iotsec.hub.mqtt.codec import encode
from iotsec.hub.mqtt.packets import Connack, Connect, Packet
from iotsec.hub.mqtt.reader import PacketReader
from iotsec.protocol import generate_sas_token, resource_uri
from iotsec.protocol.topics import build_username


def token(
    key: str,
    device_id: str,
    module_id: str | None = None,
    *,
    ttl: float = 3600,
    host: str = "localhost",
) -> str:
    """A device (or module) SAS token valid for ``ttl`` seconds (negative: already expired)."""
    return generate_sas_token(resource_uri(host, device_id, module_id), key, int(time.time() + ttl))


class RawClient:
    """One TLS connection speaking raw MQTT packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._packets = PacketReader()
        self._pending: list[Packet] = []

    @classmethod
    async def open(
        cls,
        port: int,
        ca_file: Path,
        *,
        cert: tuple[Path, Path] | None = None,
    ) -> RawClient:
        context = ssl.create_default_context(cafile=str(ca_file))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, packet: Any) -> None:
        await self.send_raw(encode(packet))

    async def receive(self, timeout: float = 5.0) -> Packet | None:
        """The next packet, or None when the hub closed the connection."""
        while not self._pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self._pending.extend(self._packets.feed(data))
        return self._pending.pop(0)

    async def closed_by_hub(self, timeout: float = 5.0) -> bool:
        """True when the hub closes the connection within ``timeout`` (packets are skipped)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    async def try_connect(
        self,
        device_id: str,
        password: str | None,
        *,
        module_id: str | None = None,
        keepalive: int = 60,
    ) -> Connack | None:
        """Send CONNECT; the CONNACK, or None when the hub closed the connection instead."""
        client_id = device_id if module_id is None else f"{device_id}/{module_id}"
        await self.send(
            Connect(
                client_id=client_id,
                username=build_username("localhost", device_id, module_id),
                password=password.encode() if password is not None else None,
                keepalive=keepalive,
                clean_session=False,
            )
        )
        connack = await self.receive()
        assert connack is None or isinstance(connack, Connack), connack
        return connack

    async def connect(
        self,
        device_id: str,
        password: str | None,
        *,
        module_id: str | None = None,
        keepalive: int = 60,
    ) -> Connack:
        """Send CONNECT and return the CONNACK (which must come)."""
        connack = await self.try_connect(
            device_id, password, module_id=module_id, keepalive=keepalive
        )
        assert connack is not None, "the hub closed the connection without a CONNACK"
        return connack

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
