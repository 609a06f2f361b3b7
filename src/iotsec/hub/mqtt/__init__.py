"""The device MQTT endpoint: a strict MQTT 3.1.1 codec and an asyncio TLS server."""

__all__: list[str] = []
