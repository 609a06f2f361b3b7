"""Who is calling: the source address, a device's SAS token or client certificate, a policy.

X.509 over HTTPS reads the client certificate from the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM strings, leaf first). Uvicorn does not
fill it in itself; ``iotsec.hub.http.server`` runs uvicorn with a protocol that does.
"""

from __future__ import annotations

import ssl
from typing import Any

from starlette.requests import Request

from iotsec.hub.errors import AuthFailure, AuthFailureReason
from iotsec.hub.http.context import HubContext
from iotsec.hub.identity import AccessPolicy, Permission

__all__ = [
    "Permissions",
    "authenticate_device",
    "authenticate_service",
    "client_certificate",
    "source_ip",
]

#: One permission, or several of which any one will do (twin reads: ServiceConnect or
#: RegistryRead).
Permissions = Permission | tuple[Permission, ...]


def source_ip(request: Request) -> str:
    """The peer address of the connection (proxies' forwarding headers are not trusted)."""
    return request.client.host if request.client is not None else "unknown"


def client_certificate(request: Request) -> tuple[bytes, tuple[bytes, ...]] | None:
    """The client certificate (DER) and the rest of its chain, when TLS presented one."""
    extensions: dict[str, Any] = request.scope.get("extensions") or {}
    tls = extensions.get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        return None
    try:
        ders = [ssl.PEM_cert_to_DER_cert(pem) for pem in chain]
    except ValueError:
        raise AuthFailure(
            AuthFailureReason.BAD_CERTIFICATE, "the client certificate is not valid PEM"
        ) from None
    return ders[0], tuple(ders[1:])


def authenticate_device(
    hub: HubContext, request: Request, device_id: str, module_id: str | None, address: str
) -> None:
    """Check the IP filter, then the SAS token (or else the client certificate) for the identity.

    Raises:
        AuthFailure: the address is filtered, or the credential does not open this identity.
    """
    auth = hub.authenticator
    try:
        auth.check_ip(address)
    except AuthFailure as exc:
        raise AuthFailure(
            exc.reason, exc.detail, device_id=device_id, module_id=module_id
        ) from None
    token = request.headers.get("authorization")
    if token is not None:
        auth.authenticate_sas(token, device_id=device_id, module_id=module_id, source_ip=address)
        return
    certificate = client_certificate(request)
    if certificate is None:
        raise AuthFailure(
            AuthFailureReason.NO_CREDENTIALS,
            "neither an Authorization header nor a client certificate was presented",
            device_id=device_id,
            module_id=module_id,
        )
    leaf, chain = certificate
    auth.authenticate_certificate(
        leaf, chain, device_id=device_id, module_id=module_id, source_ip=address
    )


def authenticate_service(
    hub: HubContext, request: Request, permissions: Permissions, address: str
) -> AccessPolicy:
    """Check that the policy token grants one of ``permissions`` (the IP filter comes first).

    Raises:
        AuthFailure: the address is filtered, the token is bad, or the policy lacks them all.
    """
    auth = hub.authenticator
    token = request.headers.get("authorization")
    if token is None:
        auth.check_ip(address)
        raise AuthFailure(
            AuthFailureReason.NO_CREDENTIALS,
            "service calls need a shared access policy token in the Authorization header",
        )
    wanted = (permissions,) if isinstance(permissions, str) else permissions
    for permission in wanted[:-1]:
        try:
            return auth.authenticate_service(token, permission=permission, source_ip=address)
        except AuthFailure as exc:
            if exc.reason is not AuthFailureReason.INSUFFICIENT_PERMISSION:
                raise
    return auth.authenticate_service(token, permission=wanted[-1], source_ip=address)
