"""Check, with the configured credential, which Graph permissions the audit needs are granted."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote

import orjson

from licensing.errors import GraphError, GraphPermissionError, GraphResponseError
from licensing.graph.client import GraphClient, query
from licensing.graph.responses import SIGN_IN_ROUTE, premium_required

__all__ = ["PermissionCheck", "check_permissions"]


@dataclass(frozen=True, slots=True)
class PermissionCheck:
    """``granted``: True present, False missing, None could not tell (``detail`` says why)."""

    permission: str
    granted: bool | None
    detail: str = ""
    optional: bool = False  # the audit runs without it, with what it feeds "not evaluated"


async def _probe(graph: GraphClient, permission: str, path: str, route: str) -> tuple[PermissionCheck, object]:
    try:
        body = await graph.get_json(path, route=route, what=f"the {permission} check")
    except GraphPermissionError as exc:
        # A tenant without Entra ID P1/P2 refuses sign-in data whatever is granted: not a missing permission.
        granted = None if premium_required(exc.code, exc.message) else False
        return PermissionCheck(permission, granted, exc.message), None
    except GraphError as exc:
        return PermissionCheck(permission, None, exc.message), None
    return PermissionCheck(permission, True, f"GET {route} answered"), body


async def check_permissions(graph: GraphClient) -> list[PermissionCheck]:
    """Try each read the audit needs (and, when a sender is configured, the mail send) and report per permission."""
    results: list[PermissionCheck] = []
    check, _ = await _probe(
        graph,
        "LicenseAssignment.Read.All or Organization.Read.All",
        "/subscribedSkus?" + query({"$select": "skuId"}),
        "/subscribedSkus",
    )
    results.append(check)
    check, _ = await _probe(
        graph,
        # companysubscription-list: Organization.Read.All (LicenseAssignment.Read.All does not cover it).
        "Organization.Read.All (tenant name and id, subscription lifecycle dates)",
        "/directory/subscriptions",
        "/directory/subscriptions",
    )
    results.append(check)
    check, body = await _probe(
        graph, "GroupMember.Read.All", "/groups?" + query({"$select": "id", "$top": 1}), "/groups"
    )
    groups = body.get("value") if isinstance(body, dict) else None
    if check.granted and isinstance(groups, list) and groups and isinstance(groups[0], dict) and groups[0].get("id"):
        gid = quote(str(groups[0]["id"]), safe="")
        check, _ = await _probe(
            graph,
            "GroupMember.Read.All",
            f"/groups/{gid}/members?" + query({"$select": "id", "$top": 1}),
            "/groups/{id}/members",
        )
    results.append(check)
    results.append(await _check_users(graph))
    check, _ = await _probe(
        graph,
        "AuditLog.Read.All (optional: sign-in activity for inactive_user_licensed; needs Entra ID P1 or P2)",
        "/users?" + query({"$select": "id,signInActivity", "$top": 1}),
        SIGN_IN_ROUTE,
    )
    results.append(replace(check, optional=True))
    results.append(await _check_mail(graph))
    return results


async def _check_users(graph: GraphClient) -> PermissionCheck:
    """User.Read.All, proven by the properties: without it Graph still answers, with limited information
    (``accountEnabled`` and ``licenseAssignmentStates`` null), which an ``id`` probe cannot tell apart."""
    from licensing.graph.parse import is_limited

    fields = "id,accountEnabled,userType,licenseAssignmentStates"
    check, body = await _probe(graph, "User.Read.All", "/users?" + query({"$select": fields, "$top": 5}), "/users")
    users = body.get("value") if isinstance(body, dict) else None
    if not check.granted or not isinstance(users, list):
        return check
    limited = [u for u in users if isinstance(u, dict) and is_limited(u)]
    if limited:
        return PermissionCheck(
            "User.Read.All",
            False,
            f"GET /users answered with limited information for {len(limited)} of {len(users)} users "
            "(accountEnabled and licenseAssignmentStates withheld)",
        )
    return PermissionCheck("User.Read.All", True, "GET /users answered with accountEnabled and licenseAssignmentStates")


async def _check_mail(graph: GraphClient) -> PermissionCheck:
    """Mail.Send without sending: a message with no recipient gets 400 when sending is allowed, 403 when not."""
    mailbox = graph.settings.alert_mail_from
    if not mailbox:
        # No mailbox, no mail alerts: nothing to need (optional), and not a reason to fail check-permissions.
        return PermissionCheck("Mail.Send", None, "not checked: ALERT_MAIL_FROM is not set", optional=True)
    probe = {"message": {"subject": "licensing-audit permission check"}, "saveToSentItems": False}
    try:
        await graph.send(
            "POST",
            f"/users/{quote(mailbox, safe='@')}/sendMail",
            route="/users/{id}/sendMail",
            body=orjson.dumps(probe),
            what="the Mail.Send check",
            idempotent=False,
        )
    except GraphPermissionError as exc:
        return PermissionCheck("Mail.Send", False, exc.message)
    except GraphResponseError as exc:
        if exc.status == 400:
            return PermissionCheck("Mail.Send", True, f"{mailbox} may send (a message without recipients was refused)")
        return PermissionCheck("Mail.Send", None, exc.message)
    except GraphError as exc:
        return PermissionCheck("Mail.Send", None, exc.message)
    return PermissionCheck("Mail.Send", True, f"{mailbox} may send")
