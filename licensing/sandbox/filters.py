"""The ``$filter`` expressions the sandbox understands for groups and users, and Graph's refusals of the rest."""

from __future__ import annotations

import re
from collections.abc import Callable

from licensing.sandbox.rendering import Rendering
from licensing.sandbox.tenant import (
    ENABLED,
    EXT_ACCEPTED,
    EXT_PENDING,
    GUEST,
    INVITED,
    GroupDef,
)
from licensing.sandbox.upn import upn_ends, upn_starts
from licensing.sandbox.wire import (
    Query,
    bad_request,
    in_index,
    require_advanced,
    split_and,
    unsupported,
)

IN_LIMIT = 15  # values of an `in` filter without advanced query parameters (_user_filter)


class Filters(Rendering):
    """Turns a ``$filter`` into a predicate over the tenant's groups or users."""

    # -------------------------------------------------------------- $filter

    def _group_filter(self, query: Query) -> Callable[[GroupDef], bool]:
        # https://learn.microsoft.com/graph/api/resources/group ; advanced forms per
        # https://learn.microsoft.com/graph/aad-advanced-queries (ConsistencyLevel: eventual and $count=true).
        preds: list[Callable[[GroupDef], bool]] = []
        sku_of = {s.sku_id: s.index for s in self.tenant.skus}
        for clause in split_and(query.filter or ""):
            c = clause.strip()
            if re.fullmatch(r"assignedLicenses/\$count\s+ne\s+0", c, re.I):
                require_advanced(query)
                preds.append(lambda g: g.licensed)
            elif re.fullmatch(r"assignedLicenses/any\(\s*\)", c, re.I):
                # Microsoft's List groups example: $filter=assignedLicenses/any() (no advanced query needed).
                preds.append(lambda g: g.licensed)
            elif re.fullmatch(r"hasMembersWithLicenseErrors\s+eq\s+true", c, re.I):
                preds.append(in_index(set(self._errors_by_group())))
            elif m := re.fullmatch(r"assignedLicenses/any\((\w+):\1/skuId\s+eq\s+([0-9a-fA-F-]{36})\)", c, re.I):
                k = sku_of.get(m.group(2).lower(), -1)
                preds.append(lambda g, k=k: k in g.sku_indices)  # type: ignore[misc]
            elif m := re.fullmatch(r"id\s+eq\s+'([^']*)'", c, re.I):
                gid = m.group(1).lower()
                preds.append(lambda g, v=gid: g.id == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"id\s+in\s+\(([^)]*)\)", c, re.I):
                ids = {x.strip().strip("'").lower() for x in m.group(1).split(",")}
                preds.append(lambda g, ids=ids: g.id in ids)  # type: ignore[misc]
            elif m := re.fullmatch(r"displayName\s+eq\s+'((?:[^']|'')*)'", c, re.I):
                name = m.group(1).replace("''", "'")
                preds.append(lambda g, v=name: g.display_name == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"startswith\(displayName,\s*'((?:[^']|'')*)'\)", c, re.I):
                v = m.group(1).replace("''", "'").lower()
                preds.append(lambda g, v=v: g.display_name.lower().startswith(v))  # type: ignore[misc]
            elif m := re.fullmatch(r"securityEnabled\s+eq\s+(true|false)", c, re.I):
                wanted = m.group(1).lower() == "true"
                preds.append(lambda g, w=wanted: g.security_enabled is w)  # type: ignore[misc]
            else:
                raise unsupported(f"Unsupported or invalid query filter clause specified for property: '{c}'.")
        return lambda g: all(p(g) for p in preds)

    def _user_filter(self, query: Query) -> Callable[[int], bool]:
        t = self.tenant
        preds: list[Callable[[int], bool]] = []
        sku_of = {s.sku_id: s.index for s in t.skus}
        for clause in split_and(query.filter or ""):
            c = clause.strip()
            if m := re.fullmatch(r"accountEnabled\s+(eq|ne)\s+(true|false)", c, re.I):
                if m.group(1).lower() == "ne":
                    require_advanced(query)
                want = (m.group(2).lower() == "true") != (m.group(1).lower() == "ne")
                preds.append(lambda u, w=want: bool(t.flags[u] & ENABLED) == w)  # type: ignore[misc]
            elif m := re.fullmatch(r"userType\s+eq\s+'(Guest|Member)'", c, re.I):
                guest = m.group(1).lower() == "guest"
                preds.append(lambda u, gst=guest: bool(t.flags[u] & GUEST) == gst)  # type: ignore[misc]
            elif m := re.fullmatch(r"creationType\s+eq\s+'Invitation'", c, re.I):
                preds.append(lambda u: bool(t.flags[u] & INVITED))
            elif m := re.fullmatch(r"externalUserState\s+eq\s+'(PendingAcceptance|Accepted)'", c, re.I):
                bit = EXT_PENDING if m.group(1).lower() == "pendingacceptance" else EXT_ACCEPTED
                preds.append(lambda u, b=bit: bool(t.flags[u] & b))  # type: ignore[misc]
            elif re.fullmatch(r"assignedLicenses/\$count\s+ne\s+0", c, re.I):
                require_advanced(query)
                preds.append(lambda u: bool(self._assigned_licenses(u)))
            elif m := re.fullmatch(r"assignedLicenses/any\((\w+):\1/skuId\s+eq\s+([0-9a-fA-F-]{36})\)", c, re.I):
                k = sku_of.get(m.group(2).lower(), -1)
                preds.append(
                    lambda u, k=k: any(  # type: ignore[misc]
                        st.sku == k and not st.error for st in t.user_states(u)
                    )
                )
            elif m := re.fullmatch(r"id\s+eq\s+'([^']*)'", c, re.I):
                uid = m.group(1).lower()
                preds.append(lambda u, v=uid: t.user_id(u) == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"id\s+in\s+\(([^)]*)\)", c, re.I):
                values = m.group(1).split(",")
                if len(values) > IN_LIMIT and not query.eventual:
                    # "When using the in operator, the request is limited to 15 expressions in the filter clause by
                    # default" (https://learn.microsoft.com/graph/known-issues); the wording of the refusal is ours.
                    raise bad_request(f"Too many values in the in clause: {len(values)}. Max allowed: {IN_LIMIT}.")
                # Ids to indices once (the GUIDs are derived, not stored): no GUID is computed per user of the tenant.
                found = (t.user_index(x.strip().strip("'").lower()) for x in values)
                indices = {i for i in found if i is not None}
                preds.append(lambda u, ix=indices: u in ix)  # type: ignore[misc]
            elif m := re.fullmatch(r"userPrincipalName\s+eq\s+'((?:[^']|'')*)'", c, re.I):
                v = m.group(1).replace("''", "'").lower()
                preds.append(lambda u, v=v: t.user_names(u)[3].lower() == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"startswith\(displayName,\s*'((?:[^']|'')*)'\)", c, re.I):
                v = m.group(1).replace("''", "'").lower()
                preds.append(lambda u, v=v: t.user_names(u)[0].lower().startswith(v))  # type: ignore[misc]
            elif m := re.fullmatch(r"(startswith|endswith)\(userPrincipalName,\s*'((?:[^']|'')*)'\)", c, re.I):
                # The split users scan's chains (licensing/graph/users_scan.py) and their documented refusals: upn.py.
                v = m.group(2).replace("''", "'")
                starts = m.group(1).lower() == "startswith"
                preds.append(upn_starts(t, v) if starts else upn_ends(t, v, query))
            else:
                raise unsupported(f"Unsupported or invalid query filter clause specified for property: '{c}'.")
        return lambda u: all(p(u) for p in preds)

    def _errors_by_group(self) -> dict[int, list[int]]:
        if self._error_groups is None:
            by: dict[int, set[int]] = {}
            for u, g, _s in self.tenant.errors:
                if self.tenant.groups[g].processed:
                    by.setdefault(g, set()).add(u)
            self._error_groups = {g: sorted(us) for g, us in by.items()}
        return self._error_groups
