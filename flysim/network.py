"""IP assignments, ACME certificates and app deploy tokens."""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.responses import JSONResponse, Response

from .durations import parse_duration
from .errors import ApiError, bad_request, not_found
from .sim import Ctx
from .state import App, Certificate, IPAssignment, now_ms, rfc3339

IP_TYPES = {"v4", "v6", "shared_v4", "private_v6", "egress_v4", "egress_v6", "egress_pair"}
SHARED_V4 = "66.241.125.{}"  # Fly's shared IPv4 pool looks like 66.241.124.0/22
DEPLOY_TOKEN_DEFAULT_EXPIRY = 20 * 365 * 24 * 3600


def _ip_for(kind: str) -> str:
    h = secrets.token_hex
    if kind == "private_v6":
        return f"fdaa:0:{h(2)}:0:1::{int(h(1), 16) + 2:x}"
    if kind in ("v6", "egress_v6"):
        return f"2a09:8280:1::{h(2)}:{h(2)}"
    if kind == "shared_v4":
        return SHARED_V4.format(secrets.randbelow(250) + 2)
    return f"137.66.{secrets.randbelow(250) + 2}.{secrets.randbelow(250) + 2}"


def _render_ip(app: App, ip: IPAssignment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ip": ip.ip,
        "region": ip.region,
        "shared": ip.shared,
        "created_at": rfc3339(ip.created_at),
        "egress": ip.type.startswith("egress"),
    }
    if ip.service_name:
        out["service_name"] = ip.service_name
    if ip.type == "private_v6":
        out["network"] = {"name": ip.network or "", "org_slug": app.org_slug}
    return out


async def ips_list(ctx: Ctx) -> Response:
    app = ctx.app()
    return JSONResponse({"ips": [_render_ip(app, ip) for ip in app.ips]})


def allocate_ip(app: App, kind: Any, *, region: Any = None, network: Any = None, service_name: Any = None) -> IPAssignment:
    """Assign an IP to the app (REST `App_IPAssignments_create` and GraphQL `allocateIpAddress`)."""
    if not isinstance(kind, str) or kind not in IP_TYPES:
        raise bad_request(f"type must be one of {sorted(IP_TYPES)}")
    if kind == "egress_pair":
        raise bad_request("egress_pair is not supported by flysim")
    for field, value in (("region", region), ("network", network), ("service_name", service_name)):
        if value is not None and not isinstance(value, str):
            raise bad_request(f"{field} must be a string")
    network = network or None
    if kind != "private_v6" and network:
        raise bad_request("network is only valid for private_v6 addresses")
    if kind == "shared_v4":
        # An app has at most one shared IPv4; asking again returns it.
        for ip in app.ips:
            if ip.type == "shared_v4":
                return ip
    ip = IPAssignment(
        ip=_ip_for(kind),
        type=kind,
        region=region or "global",
        shared=kind == "shared_v4",
        network=network if kind == "private_v6" else None,
        service_name=service_name or None,
    )
    app.ips.append(ip)
    return ip


def release_ip(app: App, addr: str) -> bool:
    for ip in app.ips:
        if ip.ip == addr:
            app.ips.remove(ip)
            return True
    return False


async def ips_create(ctx: Ctx) -> Response:
    app = ctx.app()
    body = await ctx.body()
    ip = allocate_ip(app, body.get("type"), region=body.get("region"), network=body.get("network"),
                     service_name=body.get("service_name"))
    ctx.sim.persist()
    return JSONResponse(_render_ip(app, ip))


async def ips_delete(ctx: Ctx) -> Response:
    app = ctx.app()
    if not release_ip(app, ctx.params["ip"]):
        raise not_found("ip assignment")
    ctx.sim.persist()
    return Response(status_code=204)


# -- certificates --------------------------------------------------------------------------
def _cert_active(c: Certificate) -> bool:
    return c.status == "active"


def _detail(app: App, c: Certificate) -> dict[str, Any]:
    active = _cert_active(c)
    out: dict[str, Any] = {
        "hostname": c.hostname,
        "status": c.status,
        "configured": active,
        "acme_requested": True,
        "dns_provider": "unknown",
        "dns_requirements": {
            "a": [], "aaaa": [],
            "cname": f"{app.name}.fly.dev",
            "acme_challenge": {"name": f"_acme-challenge.{c.hostname}", "target": f"{c.hostname}.{app.name[:4]}.flydns.net"},
            "ownership": {"name": f"_fly-ownership.{c.hostname}", "app_value": f"app-{app.id}", "org_value": f"org-{app.org_slug}"},
        },
        "validation": {"alpn_configured": active, "dns_configured": active, "http_configured": active, "ownership_txt_configured": active},
        "validation_errors": [],
        "certificates": [],
    }
    if active:
        expires = rfc3339(c.updated_at + 90 * 24 * 3600 * 1000)
        out["certificates"] = [{
            "source": "fly",
            "status": "active",
            "issuer": "Let's Encrypt",
            "created_at": rfc3339(c.updated_at),
            "expires_at": expires,
            "issued": [
                {"type": "ecdsa", "expires_at": expires, "certificate_authority": "lets_encrypt"},
                {"type": "rsa", "expires_at": expires, "certificate_authority": "lets_encrypt"},
            ],
        }]
    return out


def _summary(c: Certificate) -> dict[str, Any]:
    active = _cert_active(c)
    return {
        "hostname": c.hostname,
        "status": c.status,
        "configured": active,
        "acme_requested": True,
        "acme_alpn_configured": active,
        "acme_dns_configured": active,
        "acme_http_configured": active,
        "ownership_txt_configured": active,
        "has_fly_certificate": active,
        "has_custom_certificate": False,
        "dns_provider": "unknown",
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    }


def _issue_if_due(ctx: Ctx, c: Certificate) -> None:
    """Simulated ACME: issued once the profile's create latency has elapsed."""
    if c.status != "active" and now_ms() - c.created_at >= ctx.sim.profile.create * 1000:
        c.status, c.updated_at = "active", now_ms()
        ctx.sim.persist()


def _cert(ctx: Ctx, app: App) -> Certificate:
    c = app.certificates.get(ctx.params["hostname"])
    if c is None:
        raise not_found("certificate")
    _issue_if_due(ctx, c)
    return c


async def certs_acme_create(ctx: Ctx) -> Response:
    app = ctx.app()
    body = await ctx.body()
    host = body.get("hostname")
    if not isinstance(host, str) or "." not in host or host != host.lower() or " " in host:
        raise ApiError(422, "hostname must be a valid lowercase domain name")
    for other in ctx.sim.store.world.apps.values():
        if other.name != app.name and host in other.certificates:
            raise ApiError(422, "Hostname already exists on another app")
    c = app.certificates.get(host)
    if c is None:
        c = app.certificates[host] = Certificate(hostname=host)
        _issue_if_due(ctx, c)
        ctx.sim.persist()
    return JSONResponse(_detail(app, c), status_code=201)


async def certs_list(ctx: Ctx) -> Response:
    app = ctx.app()
    flt = ctx.query.get("filter") or ""
    certs = [c for h, c in sorted(app.certificates.items()) if flt in h]
    for c in certs:
        _issue_if_due(ctx, c)
    return JSONResponse({"certificates": [_summary(c) for c in certs], "total_count": len(certs)})


async def certs_show(ctx: Ctx) -> Response:
    app = ctx.app()
    return JSONResponse(_detail(app, _cert(ctx, app)))


async def certs_check(ctx: Ctx) -> Response:
    app = ctx.app()
    c = _cert(ctx, app)
    d = _detail(app, c)
    # No real DNS here: report what a correctly configured hostname would resolve to.
    d["dns_records"] = {"a": [], "aaaa": [], "cname": [f"{app.name}.fly.dev"], "resolved_addresses": [],
                        "ownership_txt": f"app-{app.id}", "acme_challenge_cname": d["dns_requirements"]["acme_challenge"]["target"]}
    return JSONResponse(d)


async def certs_delete(ctx: Ctx) -> Response:
    app = ctx.app()
    c = _cert(ctx, app)
    del app.certificates[c.hostname]
    ctx.sim.persist()
    return Response(status_code=204)


async def certs_acme_delete(ctx: Ctx) -> Response:
    app = ctx.app()
    c = _cert(ctx, app)
    del app.certificates[c.hostname]
    ctx.sim.persist()
    detail = _detail(app, c)
    detail.update({"acme_requested": False, "certificates": [], "configured": False})
    return JSONResponse(detail)


# -- deploy tokens ----------------------------------------------------------------------------
async def deploy_token(ctx: Ctx) -> Response:
    app = ctx.app()
    principal = ctx.require_principal()
    if principal.kind == "app":
        raise ApiError(401, "unauthorized")  # scoped tokens cannot mint tokens
    body = await ctx.body()
    expiry = DEPLOY_TOKEN_DEFAULT_EXPIRY
    if body.get("expiry"):
        try:
            expiry = int(parse_duration(str(body["expiry"])))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if expiry <= 0:
            raise bad_request("expiry must be positive")
    _, value = ctx.sim.auth.issue(
        kind="app", name=f"deploy token for {app.name}", org_slug=app.org_slug, app_name=app.name,
        expires_at=int(time.time()) + expiry,
    )
    ctx.sim.persist()
    return JSONResponse({"token": f"FlyV1 {value}"})


A = "/v1/apps/{app_name}"
ROUTES = [
    ("GET", A + "/ip_assignments", "App_IPAssignments_list", ips_list),
    ("POST", A + "/ip_assignments", "App_IPAssignments_create", ips_create),
    ("DELETE", A + "/ip_assignments/{ip}", "App_IPAssignments_delete", ips_delete),
    ("GET", A + "/certificates", "App_Certificates_list", certs_list),
    ("POST", A + "/certificates/acme", "App_Certificates_acme_create", certs_acme_create),
    ("GET", A + "/certificates/{hostname}", "App_Certificates_show", certs_show),
    ("DELETE", A + "/certificates/{hostname}", "App_Certificates_delete", certs_delete),
    ("DELETE", A + "/certificates/{hostname}/acme", "App_Certificates_acme_delete", certs_acme_delete),
    ("POST", A + "/certificates/{hostname}/check", "App_Certificates_check", certs_check),
    ("POST", A + "/deploy_token", "App_create_deploy_token", deploy_token),
]
