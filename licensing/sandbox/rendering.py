"""Rendering directory objects as Microsoft's shapes (users, groups, devices, license states) and paging them."""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import orjson

from licensing.sandbox.tenant import (
    ENABLED,
    EXT_ACCEPTED,
    EXT_PENDING,
    EXT_UPN,
    GUEST,
    INVITED,
    NO_GROUP,
    NO_LOCATION,
)
from licensing.sandbox.wire import (
    DEFAULT_TOP,
    DEVICE_PROPS,
    DEVICE_TYPE,
    EMPTY_LIST_GROUP_PROPS,
    FULL_USER_READ,
    GROUP,
    GROUP_DEFAULT,
    GROUP_TYPE,
    PLACEHOLDER,
    STAMP,
    USER,
    USER_DEFAULT,
    USER_TYPE,
    AppState,
    Query,
    RawJson,
    bad_request,
    decode_token,
    encode_token,
    guid_of,
)


class Rendering(AppState):
    """Users, groups and devices as Graph returns them, for a ``$select``; pages with skip tokens."""

    # -------------------------------------------------------------- rendering

    def _context(self, what: str) -> str:
        return f"{self.base_url}/$metadata#{what}"

    def _user_json(self, u: int, select: tuple[str, ...] | None, typed: bool) -> dict[str, Any]:
        t = self.tenant
        display, first, last, upn = t.user_names(u)
        f = t.flags[u]
        props = select or USER_DEFAULT
        out: dict[str, Any] = {"@odata.type": USER_TYPE} if typed else {}
        guest = bool(f & GUEST)
        access = self._user_access
        for p in props:
            if p != "id" and (access == "none" or (access == "basic" and p not in USER_DEFAULT)):
                # Limited information: "only the @odata.type property for the object type and the id is returned,
                # while other properties are indicated as null" (group-list-members); with User.ReadBasic.All
                # only the basic profile (docs/sandbox.md: an assumption for /users).
                out[p] = None
            elif p == "id":
                out["id"] = t.user_id(u)
            elif p == "displayName":
                out[p] = display
            elif p == "givenName":
                out[p] = first
            elif p == "surname":
                out[p] = last
            elif p == "userPrincipalName":
                out[p] = upn
            elif p == "mail":
                out[p] = f"{first}.{last}@fabrikam.example".lower() if f & EXT_UPN else upn
            elif p == "businessPhones":
                out[p] = []
            elif p in ("jobTitle", "mobilePhone", "officeLocation", "deletedDateTime", "companyName"):
                out[p] = None
            elif p == "preferredLanguage":
                out[p] = "en-US"
            elif p == "accountEnabled":
                out[p] = bool(f & ENABLED)
            elif p == "userType":
                out[p] = "Guest" if guest else "Member"
            elif p == "externalUserState":
                out[p] = "PendingAcceptance" if f & EXT_PENDING else "Accepted" if f & EXT_ACCEPTED else None
            elif p == "externalUserStateChangeDateTime":
                out[p] = STAMP if f & (EXT_PENDING | EXT_ACCEPTED) else None
            elif p == "creationType":
                out[p] = "Invitation" if f & INVITED else None
            elif p == "usageLocation":
                from licensing.sandbox.catalog import USAGE_LOCATIONS

                loc = t.locations[u]
                out[p] = None if loc == NO_LOCATION else USAGE_LOCATIONS[loc]
            elif p == "assignedLicenses":
                out[p] = self._assigned_licenses(u)
            elif p == "licenseAssignmentStates":
                out[p] = self._states_json(u)
            elif p == "createdDateTime":
                # New hires 10 days before the tenant's now; everyone else at the fixed STAMP, or a year before
                # the tenant's now when that is earlier (an account is never created after the day it is read).
                created = self._now() - timedelta(days=10 if t.created_recently(u) else 365)
                out[p] = (
                    created.strftime("%Y-%m-%dT%H:%M:%SZ")
                    if t.created_recently(u)
                    else min(STAMP, created.strftime("%Y-%m-%dT%H:%M:%SZ"))
                )
            elif p == "signInActivity":
                out[p] = self._sign_in_json(u)
            elif p == "department":
                out[p] = "Sales"
            elif p == "mailNickname":
                out[p] = upn.split("@", 1)[0]
            elif p == "onPremisesSyncEnabled":
                out[p] = None
            elif p in ("otherMails", "proxyAddresses"):
                out[p] = []
        return out

    def _states_json(self, u: int) -> list[dict[str, Any]]:
        t = self.tenant
        out = []
        for st in t.user_states(u):
            grp = t.groups[st.group] if st.group != NO_GROUP else None
            disabled: tuple[str, ...] = t.direct_disabled.get((u, st.sku), ()) if grp is None else ()
            if grp is not None and st.sku in grp.sku_indices:  # a removed product kept in error: none listed
                disabled = grp.disabled_plans[grp.sku_indices.index(st.sku)]
            out.append(
                {
                    "skuId": t.skus[st.sku].sku_id,
                    "disabledPlans": list(disabled),
                    "assignedByGroup": grp.id if grp is not None else None,
                    "state": st.state,
                    "error": st.error or "None",
                    "lastUpdatedDateTime": t.state_updated(u, st).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        return out

    def _now(self) -> datetime:
        return self.tenant.as_of  # the tenant's "now": never the wall clock (SandboxTenant.as_of)

    def _sign_in_json(self, u: int) -> dict[str, Any]:
        """https://learn.microsoft.com/graph/api/resources/signinactivity, for the sandbox's activity pattern.

        Users without a successful sign-in come in the shapes Microsoft serves (user-list example 11): all null;
        an empty lastSuccessfulSignInDateTime beside failed attempts and the ``0001-01-01T00:00:00Z`` placeholder;
        the placeholder as the successful date; empty strings throughout."""
        days = self.tenant.sign_in_days_ago(u)
        if days is None:
            return self._no_success_json(u)
        when = (self._now() - timedelta(days=days, hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rid = guid_of(f"{self.tenant.spec.seed}:signin:{u}")
        return {
            "lastSignInDateTime": when,
            "lastSignInRequestId": rid,
            "lastNonInteractiveSignInDateTime": when,
            "lastNonInteractiveSignInRequestId": rid,
            "lastSuccessfulSignInDateTime": when,
            "lastSuccessfulSignInRequestId": rid,
        }

    def _no_success_json(self, u: int) -> dict[str, Any]:
        shape = self.tenant.no_success_shape(u)
        if shape == "null":
            keys = ("lastSignInDateTime", "lastNonInteractiveSignInDateTime", "lastSuccessfulSignInDateTime")
            return dict.fromkeys(keys + tuple(k.replace("DateTime", "RequestId") for k in keys))
        if shape == "attempts":  # a password spray or a stale device: recent failures, never a success
            attempt = (self._now() - timedelta(days=1, hours=u % 24)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {
                "lastSignInDateTime": attempt,
                "lastSignInRequestId": guid_of(f"{self.tenant.spec.seed}:attempt:{u}"),
                "lastNonInteractiveSignInDateTime": PLACEHOLDER,
                "lastNonInteractiveSignInRequestId": "",
                "lastSuccessfulSignInDateTime": "",
                "lastSuccessfulSignInRequestId": "",
            }
        value = PLACEHOLDER if shape == "placeholder" else ""
        return {
            "lastSignInDateTime": value,
            "lastSignInRequestId": "",
            "lastNonInteractiveSignInDateTime": value,
            "lastNonInteractiveSignInRequestId": "",
            "lastSuccessfulSignInDateTime": value,
            "lastSuccessfulSignInRequestId": "",
        }

    def _assigned_licenses(self, u: int) -> list[dict[str, Any]]:
        """Active SKUs only; a plan stays enabled when any assignment enables it (intersection of disabled)."""
        t = self.tenant
        disabled: dict[int, set[str]] = {}
        for st in t.user_states(u):
            if not st.holds_seat:
                continue
            plans: set[str] = set(t.direct_disabled.get((u, st.sku), ())) if st.group == NO_GROUP else set()
            if st.group != NO_GROUP and st.sku in t.groups[st.group].sku_indices:
                grp = t.groups[st.group]
                plans = set(grp.disabled_plans[grp.sku_indices.index(st.sku)])
            disabled[st.sku] = disabled[st.sku] & plans if st.sku in disabled else plans
        return [{"disabledPlans": sorted(disabled[k]), "skuId": t.skus[k].sku_id} for k in sorted(disabled)]

    def _group_json(self, g: int, select: tuple[str, ...] | None, typed: bool) -> dict[str, Any]:
        grp = self.tenant.groups[g]
        out: dict[str, Any] = {"@odata.type": GROUP_TYPE} if typed else {}
        nick = re.sub(r"[^A-Za-z0-9]", "", grp.display_name)[:40] or f"group{g}"
        for p in select or GROUP_DEFAULT:
            if p == "id":
                out[p] = grp.id
            elif p == "displayName":
                out[p] = grp.display_name
            elif p == "description":
                out[p] = grp.description
            elif p in ("createdDateTime", "renewedDateTime"):
                out[p] = STAMP
            elif p == "groupTypes":
                out[p] = list(grp.group_types)
            elif p in EMPTY_LIST_GROUP_PROPS:
                out[p] = []
            elif p == "mailEnabled":
                out[p] = False
            elif p == "securityEnabled":
                out[p] = grp.security_enabled
            elif p == "membershipRule":
                out[p] = grp.membership_rule
            elif p == "membershipRuleProcessingState":
                out[p] = grp.rule_processing
            elif p == "mailNickname":
                out[p] = nick
            elif p == "isAssignableToRole":
                out[p] = False
            elif p == "securityIdentifier":
                out[p] = f"S-1-12-1-{zlib.crc32(grp.id.encode())}-{g}"
            elif p == "assignedLicenses":
                out[p] = [
                    {"disabledPlans": list(d), "skuId": self.tenant.skus[s].sku_id}
                    for s, d in zip(grp.sku_indices, grp.disabled_plans, strict=True)
                ]
            elif p == "licenseProcessingState":
                # https://learn.microsoft.com/graph/api/resources/licenseprocessingstate
                out[p] = {"state": grp.processing_state} if grp.processing_state else None
            elif p == "hasMembersWithLicenseErrors":
                continue  # never returned on GET
            elif p in GROUP_DEFAULT:
                out[p] = None
        return out

    def _device_json(self, g: int, d: int, select: tuple[str, ...] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.type": DEVICE_TYPE}
        ident = guid_of(f"{self.tenant.spec.seed}:device:{g}:{d}")
        values = {
            "id": ident,
            "accountEnabled": True,
            "deviceId": ident,
            "displayName": f"KIOSK-{g:03d}-{d:02d}",
            "operatingSystem": "Windows",
            "operatingSystemVersion": "10.0.22631",
        }
        for p in select or DEVICE_PROPS:
            if p in values:
                out[p] = values[p]
        return out

    def _render(self, tag: int, select: tuple[str, ...] | None, typed: bool) -> dict[str, Any]:
        kind, idx = tag % 3, tag // 3
        if kind == USER:
            return self._user_json(idx, select, typed)
        if kind == GROUP:
            return self._group_json(idx, select, typed)
        return self._device_json(idx // 1000, idx % 1000, select)

    @staticmethod
    def _check_select(select: tuple[str, ...] | None, allowed: tuple[tuple[str, ...], ...], type_name: str) -> None:
        if not select:
            return
        known = {p.lower(): p for props in allowed for p in props}
        for p in select:
            if p.lower() not in known:
                raise bad_request(f"Could not find a property named '{p}' on type '{type_name}'.")

    # -------------------------------------------------------------- paging

    def _page(
        self,
        query: Query,
        key: str,
        items: Sequence[int],
        context: str,
        render: Callable[[int], dict[str, Any]],
        typed: bool | None = None,
        annotate: bool = True,
    ) -> tuple[dict[str, Any] | bytes, int]:
        """One page of ``items``. With ``typed`` (users and members: tags that :meth:`_render` knows), the
        page is built from cached serialised objects; ``render`` is used when a body fault rewrites objects."""
        top = query.top or DEFAULT_TOP
        sig = zlib.crc32(f"{key}|{query.filter}|{query.select}".encode())
        offset = 0
        if query.skiptoken:
            offset = decode_token(query.skiptoken, sig)
        fault = self._body_fault_now
        size = 0 if fault in ("empty_page", "empty_answer") else max(1, top // 3) if fault == "short_page" else top
        chunk = items[offset : offset + size]
        end = offset + len(chunk)
        if typed is not None and fault is None:
            return self._page_bytes(query, key, items, context, chunk, end, sig, typed, annotate), len(chunk)
        value = [render(tag) for tag in chunk]
        body: dict[str, Any] = {"@odata.context": context}
        if query.count:
            body["@odata.count"] = len(items)
        if fault == "unknown_type":
            body["@microsoft.graph.tips"] = "Unknown annotation a reader must ignore."
            for obj in value:
                obj["sandboxFutureField"] = {"nested": [1, 2, 3]}
        # The object of an unknown type joins pages that hold objects only: in an empty collection it would make an
        # empty group a group with one member, a change of the tenant its ground truth cannot know (the 300k load
        # test lost its empty_licensed_group whenever the seeded draw put this fault on that group's only page).
        if fault == "unknown_type" and value:
            value.append(
                {
                    "@odata.type": "#microsoft.graph.sandboxFutureObject",
                    "id": str(uuid.UUID(int=zlib.crc32(context.encode()) + offset)),
                    "displayName": "A directory object type this reader has never seen",
                    "futureOnly": True,
                }
            )
        # empty_answer is the whole collection answered empty: no next link (it used to keep one, so it read as an
        # empty page and the collection came back whole on the next request).
        if (end < len(items) and fault != "empty_answer") or fault == "empty_page":
            body["@odata.nextLink"] = self._next_link(key, query, encode_token(end, sig))
        body["value"] = value
        return body, len(value)

    def _page_bytes(
        self,
        query: Query,
        key: str,
        items: Sequence[int],
        context: str,
        chunk: Sequence[int],
        end: int,
        sig: int,
        typed: bool,
        annotate: bool = True,
    ) -> RawJson:
        """The same JSON as the dict path (same keys, same order), joined from cached objects."""
        select = query.select
        cache = self._fragments
        parts = []
        for tag in chunk:
            ckey = (tag, select, typed, annotate)
            frag = cache.get(ckey)
            if frag is None:
                frag = cache[ckey] = orjson.dumps(
                    self._render(tag, select, annotate) if typed else self._user_json(tag // 3, select, False)
                )
            parts.append(frag)
        head: dict[str, Any] = {"@odata.context": context}
        if query.count:
            head["@odata.count"] = len(items)
        if end < len(items):
            head["@odata.nextLink"] = self._next_link(key, query, encode_token(end, sig))
        return RawJson(b"".join((orjson.dumps(head)[:-1], b',"value":[', b",".join(parts), b"]}")))

    def _next_link(self, key: str, query: Query, token: str) -> str:
        pieces = [p for p in query.raw if unquote(p.partition("=")[0]).lower().lstrip("$") != "skiptoken"]
        pieces.append(f"$skiptoken={token}")
        return f"{self.base_url}/{key}?{'&'.join(pieces)}"

    @property
    def _user_access(self) -> str:
        """What the caller may read of users: "full", "basic" (User.ReadBasic.All) or "none" (limited information)."""
        granted = self._faults.permissions
        if granted is None or granted & FULL_USER_READ:
            return "full"
        return "basic" if "User.ReadBasic.All" in granted else "none"
