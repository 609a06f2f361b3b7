"""Drive Microsoft's ``azure-iot-device`` SDK against a hub. Runs in the SDK's own virtualenv.

    python azure_device_script.py --connection-string CS --ca-file PEM --port PORT
        [--module] [--message FILE] [--reported JSON] STEP...

Steps run in the order given; each prints one JSON object on a line of its own:

* ``connect``: ``{"step": "connect", "connected": true}``
* ``send-security``: sends the body of ``--message`` marked ``set_as_security_message()``
* ``get-twin``: ``{"step": "get-twin", "twin": {"desired": ..., "reported": ...}}``
* ``patch-reported``: patches reported properties with ``--reported``
* ``wait-desired``: once subscribed prints ``{"step": "desired-ready"}``, then waits for one
  desired-properties patch: ``{"step": "wait-desired", "patch": {...}}``

At the end the client shuts down (``{"step": "shutdown"}``). An SDK error prints
``{"step": ..., "error": TYPE, "detail": TEXT}`` and exits 1.

The SDK always connects to port 8883 (``azure/iot/device/common/mqtt_transport.py``); a test hub
listens on a port the OS chose, so paho's ``connect`` is pointed at ``--port`` instead. Nothing
else of the SDK is touched.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho  # type: ignore[import-untyped]  # paho-mqtt 1.x has no types
from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message

_SDK_PORT = 8883
DESIRED_TIMEOUT = 20.0


def _redirect_port(target: int) -> None:
    connect = paho.Client.connect

    def redirected(
        self: paho.Client, host: str, port: int = 1883, keepalive: int = 60, **kw: Any
    ) -> Any:
        return connect(self, host, target if port == _SDK_PORT else port, keepalive, **kw)

    paho.Client.connect = redirected  # the SDK hard-codes 8883


def _say(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def _chain(exc: BaseException | None) -> str:
    """The exception and its causes: the SDK wraps transport errors in ``ClientError``."""
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


def _run(client: IoTHubDeviceClient | IoTHubModuleClient, args: argparse.Namespace) -> None:
    desired: queue.Queue[dict[str, Any]] = queue.Queue()
    for step in args.steps:
        try:
            if step == "connect":
                client.connect()
                _say(step, connected=client.connected)
            elif step == "send-security":
                body = Path(args.message).read_bytes()
                message = Message(body)  # type: ignore[no-untyped-call]  # unannotated in the SDK
                message.content_type = "application/json"
                message.content_encoding = "utf-8"
                message.set_as_security_message()  # type: ignore[no-untyped-call]  # as above
                client.send_message(message)
                _say(step, sent=len(message.data))
            elif step == "get-twin":
                _say(step, twin=client.get_twin())
            elif step == "patch-reported":
                client.patch_twin_reported_properties(json.loads(args.reported))
                _say(step, patched=True)
            elif step == "wait-desired":
                # Setting the handler subscribes to desired updates before it returns.
                client.on_twin_desired_properties_patch_received = desired.put
                _say("desired-ready")
                _say(step, patch=desired.get(timeout=DESIRED_TIMEOUT))
            else:
                raise ValueError(f"unknown step {step!r}")
        except Exception as exc:  # every SDK failure is reported to the test, which asserts
            _say(step, error=type(exc).__name__, detail=_chain(exc))
            client.shutdown()
            sys.exit(1)
    client.shutdown()
    _say("shutdown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connection-string", required=True)
    parser.add_argument("--ca-file", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--module", action="store_true", help="use IoTHubModuleClient")
    parser.add_argument("--message", help="file with the security message body")
    parser.add_argument("--reported", default="{}", help="reported-properties patch (JSON)")
    parser.add_argument("steps", nargs="+")
    args = parser.parse_args()
    _redirect_port(args.port)
    kind = IoTHubModuleClient if args.module else IoTHubDeviceClient
    client = kind.create_from_connection_string(
        args.connection_string,
        server_verification_cert=args.ca_file.read_text("ascii"),
        connection_retry=False,  # a refused connection must fail the step, not retry forever
        keep_alive=30,
    )
    _run(client, args)


if __name__ == "__main__":
    main()
