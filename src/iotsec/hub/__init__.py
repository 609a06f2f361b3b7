"""The hub: device identities, TLS MQTT and HTTPS endpoints, twins, ingestion, operation logs.

``HubServer(HubSettings(...))`` is the whole hub in one process; ``iotsec up`` runs it.
"""

from iotsec.hub.deadletters import DEADLETTER_KIND
from iotsec.hub.errors import (
    AuthFailure,
    AuthFailureReason,
    CertificateError,
    CertificateNotFound,
    HubConfigError,
    HubError,
    IdentityExists,
    IdentityNotFound,
    InvalidCertificate,
    InvalidIdentity,
    InvalidTwinPatch,
    PacketError,
    PreconditionFailed,
    RateLimited,
    RegistryError,
    TwinError,
    TwinTooLarge,
)
from iotsec.hub.hubconfig import HubConfiguration, IpFilterRule
from iotsec.hub.identity import (
    SECURITY_MODULE_ID,
    AccessPolicy,
    Identity,
    SymmetricKeys,
    Thumbprints,
)
from iotsec.hub.ingest import SECURITY_KIND, TELEMETRY_KIND
from iotsec.hub.oplog import OPLOG_KIND, OperationLogEntry
from iotsec.hub.registry import RegistryStore
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings, default_hub_name, resource_id
from iotsec.hub.twins import Twin

__all__ = [
    "DEADLETTER_KIND",
    "OPLOG_KIND",
    "SECURITY_KIND",
    "SECURITY_MODULE_ID",
    "TELEMETRY_KIND",
    "AccessPolicy",
    "AuthFailure",
    "AuthFailureReason",
    "CertificateError",
    "CertificateNotFound",
    "HubConfigError",
    "HubConfiguration",
    "HubError",
    "HubServer",
    "HubSettings",
    "Identity",
    "IdentityExists",
    "IdentityNotFound",
    "InvalidCertificate",
    "InvalidIdentity",
    "InvalidTwinPatch",
    "IpFilterRule",
    "OperationLogEntry",
    "PacketError",
    "PreconditionFailed",
    "RateLimited",
    "RegistryError",
    "RegistryStore",
    "SymmetricKeys",
    "Thumbprints",
    "Twin",
    "TwinError",
    "TwinTooLarge",
    "default_hub_name",
    "resource_id",
]
