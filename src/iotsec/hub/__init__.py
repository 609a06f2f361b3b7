"""The hub: device identities, TLS MQTT and HTTPS endpoints, twins, ingestion, operation logs."""

__all__: list[str] = []
