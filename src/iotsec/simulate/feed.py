"""The demo threat-intelligence feed: a STIX 2.1 bundle of the ``ti-connection`` addresses.

Load it as a feed (``iotsec simulate --print-stix > demo-feed.json``) and the ``ti-connection``
scenario raises its alert; without it, the scenario's connections look like any other. The
bundle is the same every time (fixed ids and times), valid from 2020 with no end.
"""

from __future__ import annotations

from typing import Any

from iotsec.simulate._random import new_uuid, rng_for

__all__ = ["THREAT_INTEL_ADDRESSES", "scenario_indicators"]

#: The bundle's addresses (TEST-NET-1, RFC 5737); ``ti-connection`` reaches one of them.
THREAT_INTEL_ADDRESSES = ("192.0.2.77", "192.0.2.131", "192.0.2.200")
_STIX_TIME = "2024-01-01T00:00:00.000Z"
_STIX_VALID_FROM = "2020-01-01T00:00:00Z"


def scenario_indicators() -> dict[str, Any]:
    """A STIX 2.1 bundle of the addresses ``ti-connection`` reaches, to load as a feed.

    >>> bundle = scenario_indicators()
    >>> bundle["type"], [o["pattern"] for o in bundle["objects"] if o["type"] == "indicator"][0]
    ('bundle', "[ipv4-addr:value = '192.0.2.77']")
    """
    rng = rng_for(0, "stix")
    identity_id = f"identity--{new_uuid(rng)}"
    objects: list[dict[str, Any]] = [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": identity_id,
            "created": _STIX_TIME,
            "modified": _STIX_TIME,
            "name": "iotsec demo fleet",
            "identity_class": "system",
        }
    ]
    for address in THREAT_INTEL_ADDRESSES:
        objects.append(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--{new_uuid(rng)}",
                "created_by_ref": identity_id,
                "created": _STIX_TIME,
                "modified": _STIX_TIME,
                "name": f"Command-and-control server {address}",
                "description": "Address used by the iotsec simulator's ti-connection scenario.",
                "indicator_types": ["malicious-activity"],
                "pattern": f"[ipv4-addr:value = '{address}']",
                "pattern_type": "stix",
                "pattern_version": "2.1",
                "valid_from": _STIX_VALID_FROM,
            }
        )
    return {"type": "bundle", "id": f"bundle--{new_uuid(rng)}", "objects": objects}
