"""The sandbox's route handlers: organization, subscribedSkus, subscriptions, groups, members, users, licenseDetails."""

from __future__ import annotations

import base64
import re
from array import array
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from licensing.sandbox.catalog import SKU_CATALOG
from licensing.sandbox.filters import Filters
from licensing.sandbox.tenant import (
    GroupDef,
)
from licensing.sandbox.wire import (
    CASTS,
    DEVICE,
    DEVICE_PROPS,
    GROUP,
    GROUP_DEFAULT,
    GROUP_SELECT_ONLY,
    NON_PREMIUM_CODE,
    SIGN_IN_MAX_TOP,
    STAMP,
    USER,
    USER_DEFAULT,
    USER_SELECT_ONLY,
    GraphError,
    Query,
    bad_request,
    guid_of,
    not_found,
    select_dict,
    service_plans,
    unsupported,
)


class Handlers(Filters):
    """One method per Graph route family; each answers (body, objects) for a query and a route key."""

    # -------------------------------------------------------------- handlers

    def _organization(self, query: Query, key: str) -> tuple[Any, int]:
        t = self.tenant
        org = {
            "id": t.tenant_id,
            "deletedDateTime": None,
            "businessPhones": [],
            "city": "Redmond",
            "country": None,
            "countryLetterCode": "US",
            "createdDateTime": STAMP,
            "displayName": t.tenant_name,
            "preferredLanguage": "en",
            "tenantType": "AAD",
            "assignedPlans": [],
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": True,
                    "isInitial": True,
                    "name": t.domain,
                    "type": "Managed",
                }
            ],
        }
        return {"@odata.context": self._context("organization"), "value": [select_dict(org, query.select)]}, 1

    def _sku_json(self, k: int) -> dict[str, Any]:
        # https://learn.microsoft.com/graph/api/resources/subscribedsku
        t = self.tenant
        s = t.skus[k]
        account = k % 2  # two billing accounts, as in Microsoft's List subscribedSkus example; neither is the tenant
        return {
            "accountName": f"{t.domain.split('.', 1)[0]} billing account {account + 1}",
            "accountId": guid_of(f"{t.tenant_id}:billing-account:{account}"),
            "appliesTo": s.applies_to,
            "capabilityStatus": s.capability_status,
            "consumedUnits": s.consumed,
            "id": f"{t.tenant_id}_{s.sku_id}",
            "prepaidUnits": {
                "enabled": s.enabled,
                "suspended": s.suspended,
                "warning": s.warning,
                "lockedOut": s.locked_out,
            },
            "servicePlans": service_plans(s),
            "skuId": s.sku_id,
            "skuPartNumber": s.part_number,
            "subscriptionIds": [sub["id"] for sub in self._subscription_list(k)],
        }

    def _skus(self, query: Query, key: str) -> tuple[Any, int]:
        t = self.tenant
        if query.filter:
            raise unsupported("The subscribedSkus collection does not support $filter.")
        if key:
            for k, s in enumerate(t.skus):
                if key.lower() in (f"{t.tenant_id}_{s.sku_id}", s.sku_id):
                    return select_dict(self._sku_json(k), query.select), 1
            raise not_found(key)
        value = [select_dict(self._sku_json(k), query.select) for k in range(len(t.skus))]
        if self._body_fault_now == "empty_answer":
            value = []
        return {"@odata.context": self._context("subscribedSkus"), "value": value}, len(value)

    def _subscription_list(self, k: int) -> list[dict[str, Any]]:
        # https://learn.microsoft.com/graph/api/resources/companysubscription
        t, s = self.tenant, self.tenant.skus[k]
        # The enabled subscription: a trial ending in 10 days (the free SKU), a month-to-month one renewing in 12
        # days (the over-consumed SKU: rolls over, never news), or an annual one (300 days after the grace date).
        plan = SKU_CATALOG[k].plan
        renews = t.as_of + timedelta(days=20)  # the grace date, 20 days after the tenant's "now" (truth.py)
        enabled_next = {"free": timedelta(days=-10), "over": timedelta(days=-8)}.get(plan)
        parts: list[tuple[str, int, datetime | None]] = [
            ("Enabled", s.enabled, renews + enabled_next if enabled_next is not None else None)
        ]
        if s.warning:
            parts.append(("Warning", s.warning, renews))
        if s.suspended:
            parts.append(("Suspended", s.suspended, renews + timedelta(days=30)))
        if s.locked_out:
            parts.append(("LockedOut", s.locked_out, None))
        out = []
        for i, (status, total, nxt) in enumerate(parts):
            if total == 0 and status == "Enabled" and len(parts) > 1:
                continue
            ident = guid_of(f"{t.tenant_id}:{s.sku_id}:{i}")
            out.append(
                {
                    "id": ident,
                    "commerceSubscriptionId": ident,
                    "createdDateTime": STAMP,
                    "isTrial": plan == "free" and status == "Enabled",
                    "nextLifecycleDateTime": (nxt or renews + timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ownerId": None,
                    "ownerTenantId": None,
                    "ownerType": None,
                    "serviceStatus": service_plans(s),
                    "skuId": s.sku_id,
                    "skuPartNumber": s.part_number,
                    "status": status,
                    "totalLicenses": total,
                }
            )
        return out

    def _subscriptions(self, query: Query, key: str) -> tuple[Any, int]:
        value = [
            select_dict(sub, query.select) for k in range(len(self.tenant.skus)) for sub in self._subscription_list(k)
        ]
        return {"@odata.context": self._context("directory/subscriptions"), "value": value}, len(value)

    def _group_or_404(self, ident: str) -> GroupDef:
        g = self.tenant.group_by_id(ident)
        if g is None or g.index in self.deleted:
            raise not_found(ident)
        return g

    def _group_tags(self, query: Query) -> Sequence[int]:
        ckey = ("groups", query.filter or "", str(query.eventual and query.count))
        with self._lock:
            cached = self._cache.get(ckey)
        if cached is None:
            pred = self._group_filter(query)
            cached = array(
                "q", (3 * g.index + GROUP for g in self.tenant.groups if g.index not in self.deleted and pred(g))
            )
            with self._lock:
                self._cache[ckey] = cached
        return cached

    def _groups(self, query: Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (GROUP_DEFAULT, GROUP_SELECT_ONLY), "microsoft.graph.group")
        items = self._group_tags(query)
        ctx = self._context("groups" + (f"({','.join(query.select)})" if query.select else ""))
        return self._page(query, "groups", items, ctx, lambda tag: self._group_json(tag // 3, query.select, False))

    def _count_groups(self, query: Query, key: str) -> tuple[Any, int]:
        if not query.eventual:
            raise bad_request("$count is not currently supported.")
        return str(len(self._group_tags(query))).encode(), 0

    def _group(self, query: Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (GROUP_DEFAULT, GROUP_SELECT_ONLY), "microsoft.graph.group")
        g = self._group_or_404(key)
        body = {"@odata.context": self._context("groups/$entity"), **self._group_json(g.index, query.select, False)}
        return body, 1

    def _member_tags(self, rel: str, grp: GroupDef, cast: int | None) -> Sequence[int]:
        ckey = ("members", rel, str(grp.index), str(cast))
        with self._lock:
            cached = self._cache.get(ckey)
        if cached is not None:
            return cached
        tags: list[int] = []
        if rel == "members":
            tags = [3 * u for u in grp.users] + [3 * mg + GROUP for mg in grp.member_groups]
            tags += [3 * (grp.index * 1000 + d) + DEVICE for d in range(grp.devices)]
        elif rel == "membersWithLicenseErrors":
            # Members in error, and former members whose removal failed (their state still names the group): the
            # assumption of licensing/graph/group_scope.py, which the docs neither confirm nor deny (docs/sandbox.md).
            left = {u for u, states in self.tenant.removed.items() if any(g == grp.index for g, _s, _e in states)}
            tags = [3 * u for u in sorted(set(self._errors_by_group().get(grp.index, ())) | left)]
        else:  # transitiveMembers: every user, group and device below, each once
            seen_g, seen_u, stack = {grp.index}, set(), [grp.index]
            while stack:
                cur = self.tenant.groups[stack.pop(0)]
                for u in cur.users:
                    if u not in seen_u:
                        seen_u.add(u)
                        tags.append(3 * u)
                tags += [3 * (cur.index * 1000 + d) + DEVICE for d in range(cur.devices)]
                for mg in cur.member_groups:
                    if mg not in seen_g:
                        seen_g.add(mg)
                        tags.append(3 * mg + GROUP)
                        stack.append(mg)
        if cast is not None:
            tags = [x for x in tags if x % 3 == cast]
        result = array("q", tags)
        with self._lock:
            self._cache[ckey] = result
        return result

    def _member_parts(self, key: str) -> tuple[GroupDef, str, int | None]:
        parts = [p for p in key.split("/") if p != "$count"]
        grp = self._group_or_404(parts[0])
        cast = CASTS[parts[2]] if len(parts) > 2 else None
        return grp, parts[1], cast

    def _members(self, query: Query, key: str) -> tuple[Any, int]:
        grp, rel, cast = self._member_parts(key)
        if query.filter:
            raise unsupported(f"The sandbox does not simulate $filter on {rel}.")
        allowed = {USER: (USER_DEFAULT, USER_SELECT_ONLY), GROUP: (GROUP_DEFAULT, GROUP_SELECT_ONLY)}.get(
            cast if cast is not None else -1,
            (USER_DEFAULT, USER_SELECT_ONLY, GROUP_DEFAULT, GROUP_SELECT_ONLY, DEVICE_PROPS),
        )
        type_name = {USER: "microsoft.graph.user", GROUP: "microsoft.graph.group"}.get(
            cast if cast is not None else -1, "microsoft.graph.directoryObject"
        )
        self._check_select(query.select, allowed, type_name)
        items = self._member_tags(rel, grp, cast)
        what = {USER: "users", GROUP: "groups", DEVICE: "devices"}.get(
            cast if cast is not None else -1, "directoryObjects"
        )
        ctx = self._context(what + (f"({','.join(query.select)})" if query.select else ""))
        # Microsoft's examples of an OData cast (/groups/{id}/members/microsoft.graph.user) show objects without
        # @odata.type (group-list-members, example 4): the sandbox omits it there too.
        annotate = cast is None
        return self._page(
            query,
            f"groups/{key}",
            items,
            ctx,
            lambda tag: self._render(tag, query.select, annotate),
            typed=True,
            annotate=annotate,
        )

    def _count_members(self, query: Query, key: str) -> tuple[Any, int]:
        if not query.eventual:
            raise bad_request("$count is not currently supported.")
        grp, rel, cast = self._member_parts(key)
        return str(len(self._member_tags(rel, grp, cast))).encode(), 0

    def _user_tags(self, query: Query) -> Sequence[int]:
        n = self.tenant.user_count
        if not query.filter:
            return range(0, 3 * n, 3)
        ckey = ("users", query.filter, str(query.eventual and query.count))
        with self._lock:
            cached = self._cache.get(ckey)
        if cached is None:
            pred = self._user_filter(query)
            cached = array("q", (3 * u for u in range(n) if pred(u)))
            with self._lock:
                self._cache[ckey] = cached
        return cached

    def _users(self, query: Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (USER_DEFAULT, USER_SELECT_ONLY), "microsoft.graph.user")
        if query.select and "signInActivity" in query.select:
            # signInActivity: AuditLog.Read.All and a tenant with Entra ID P1/P2; "Requests with $top set higher
            # than 500 return pages with up to 500 users" (https://learn.microsoft.com/graph/api/user-list).
            granted = self._faults.permissions
            if granted is not None and "AuditLog.Read.All" not in granted:
                raise GraphError(
                    403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
                )
            if not self.tenant.spec.entra_premium:
                raise GraphError(403, NON_PREMIUM_CODE, "Neither tenant is B2C or tenant doesn't have premium license")
            if query.top is not None and query.top > SIGN_IN_MAX_TOP:
                query = replace(query, top=SIGN_IN_MAX_TOP)
        items = self._user_tags(query)
        ctx = self._context("users" + (f"({','.join(query.select)})" if query.select else ""))
        return self._page(
            query, "users", items, ctx, lambda tag: self._user_json(tag // 3, query.select, False), typed=False
        )

    def _count_users(self, query: Query, key: str) -> tuple[Any, int]:
        if not query.eventual:
            raise bad_request("$count is not currently supported.")
        return str(len(self._user_tags(query))).encode(), 0

    def _user_or_404(self, ident: str) -> int:
        t = self.tenant
        u = t.user_index(ident)
        if u is None and "@" in ident:
            m = re.search(r"(\d+)(?:_[^@]*)?@", ident)
            if m and int(m.group(1)) < t.user_count and t.user_names(int(m.group(1)))[3].lower() == ident.lower():
                u = int(m.group(1))
        if u is None:
            raise not_found(ident)
        return u

    def _user(self, query: Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (USER_DEFAULT, USER_SELECT_ONLY), "microsoft.graph.user")
        u = self._user_or_404(key)
        return {"@odata.context": self._context("users/$entity"), **self._user_json(u, query.select, False)}, 1

    def _license_details(self, query: Query, key: str) -> tuple[Any, int]:
        # https://learn.microsoft.com/graph/api/resources/licensedetails
        u = self._user_or_404(key)
        t = self.tenant
        value = []
        for lic in self._assigned_licenses(u):
            s = next(s for s in t.skus if s.sku_id == lic["skuId"])
            disabled = set(lic["disabledPlans"])
            value.append(
                select_dict(
                    {
                        "id": base64.urlsafe_b64encode(f"{t.user_id(u)}:{s.sku_id}".encode()).decode().rstrip("="),
                        "skuId": s.sku_id,
                        "skuPartNumber": s.part_number,
                        "servicePlans": [
                            {
                                "servicePlanId": p.id,
                                "servicePlanName": p.name,
                                "provisioningStatus": "Disabled" if p.id in disabled else "Success",
                                "appliesTo": s.applies_to,
                            }
                            for p in s.plans
                        ],
                    },
                    query.select,
                )
            )
        return {"@odata.context": self._context(f"users('{t.user_id(u)}')/licenseDetails"), "value": value}, len(value)
