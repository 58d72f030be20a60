"""The sandbox's writes: ``POST /groups/{id}/assignLicense`` and the background processing it starts.

Microsoft documents the call (https://learn.microsoft.com/graph/api/group-assignlicense): a body of
``addLicenses`` (assignedLicense objects, ``disabledPlans`` by servicePlanId) and ``removeLicenses`` (skuIds),
answered ``202 Accepted`` with the target group; Entra then processes the group's members in the background,
its ``licenseProcessingState`` going from ``QueuedForProcessing`` through ``ProcessingInProgress`` to
``ProcessingComplete`` (https://learn.microsoft.com/graph/api/resources/licenseprocessingstate), and each member's
``licenseAssignmentStates`` show what was assigned or why not
(https://learn.microsoft.com/entra/identity/users/licensing-groups-resolve-problems).

Processing is driven deterministically, never by the wall clock: it advances one step each time the group itself
is read (``GET /groups/{id}``, what a caller polls) and completes after ``processing_reads`` of them; tests may
also call :meth:`Writes.settle`. What the pages do not say is listed in docs/sandbox.md ("Writes").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

import orjson

from licensing.sandbox.catalog import USAGE_LOCATIONS
from licensing.sandbox.faults import FaultRule
from licensing.sandbox.rendering import Rendering
from licensing.sandbox.tenant import NO_GROUP, PROCESSING_COMPLETE, GroupDef
from licensing.sandbox.wire import GraphError, Request, Response, bad_request, not_found

__all__ = ["DEPENDENT_PLANS", "MUTUALLY_EXCLUSIVE_SKUS", "Writes"]

QUEUED: Final = "QueuedForProcessing"
IN_PROGRESS: Final = "ProcessingInProgress"
# The usage location where no product is offered (the generator's prohibited-location case).
PROHIBITED_LOCATION: Final = USAGE_LOCATIONS.index("KP")
# Sandbox assumption (docs/sandbox.md "Writes"): Microsoft's example of conflicting plans is Exchange Online Plan 1
# against Plan 2; the catalogue has no Plan 1, so Office 365 E3 and Microsoft 365 E3 stand in for such a pair and
# conflict while both enable Yammer (disabling it in either one avoids the conflict: disabledPlans honoured; the
# generated Microsoft 365 E3 group disables it, so the generated tenant has no such conflict).
MUTUALLY_EXCLUSIVE_SKUS: Final = (("ENTERPRISEPACK", "SPE_E3"),)
CONFLICTING_PLAN: Final = "YAMMER_ENTERPRISE"
# "DependencyViolation: ... attempts to remove the underlying service plans that other products depend on"
# (licensing-groups-resolve-problems): Entra ID P2 depends on Entra ID P1 (a sandbox assumption of which plan).
DEPENDENT_PLANS: Final = {"AAD_PREMIUM_P2": "AAD_PREMIUM"}


@dataclass(slots=True)
class _Pending:
    """A group whose assignment changed and whose members are not processed yet."""

    reads_left: int
    before: dict[int, set[int]]  # member -> SKUs held before the change (any assignment)
    removed: dict[int, tuple[str, ...]]  # removed SKU -> the plans it had disabled on this group


class Writes(Rendering):
    """assignLicense on groups, and the background processing of their members."""

    processing_reads: int = 2  # reads of the group until processing completes (the first moves it in progress)
    _pending: dict[int, _Pending]

    # -------------------------------------------------------------- the call

    def _assign_license(
        self, req: Request, key: str, fault: FaultRule | None, request_id: str, client_id: str
    ) -> Response:
        """Carry out the call (unless a fault stops it before), or carry it out and lose the answer
        (``accepted_timeout``: the outcome is unknown to the caller, the tenant changed)."""
        if fault is not None and fault.kind != "accepted_timeout":
            if fault.kind in ("reset", "timeout"):
                return Response(0, action=fault.kind, hold_s=fault.hold_s)
            return self._error(self._fault_error(fault), request_id, client_id)  # type: ignore[attr-defined]
        try:
            body = self._apply_assignment(key, req.body)
        except GraphError as exc:
            return self._error(exc, request_id, client_id)  # type: ignore[attr-defined]
        if fault is not None:  # accepted_timeout: done, and the answer never arrives
            with self._lock:
                self._stats.faults[fault.kind] += 1
            return Response(0, action="timeout", hold_s=fault.hold_s)
        group = self.tenant.group_by_id(key)
        assert group is not None
        # Microsoft's example answers with a location header naming the directory object.
        location = f"{self.base_url.rsplit('/', 1)[0]}/v2/{self.tenant.tenant_id}/directoryObjects/{group.id}"
        headers = [("location", f"{location}/Microsoft.DirectoryServices.Group"), ("request-id", request_id),
                   ("client-request-id", client_id)]  # fmt: skip
        with self._lock:
            self._stats.by_status[202] += 1
        return Response(202, orjson.dumps(body), headers)

    def _apply_assignment(self, key: str, raw: bytes) -> dict[str, Any]:
        t = self.tenant
        grp = t.group_by_id(key)
        if grp is None or grp.index in self.deleted:
            raise not_found(key)
        adds, removes = self._read_body(raw)
        for k in removes:
            if k not in grp.sku_indices:
                raise bad_request(f"License {t.skus[k].sku_id} is not assigned to the group and cannot be removed.")
        if adds and not grp.security_enabled:
            raise bad_request("Licenses can be assigned only to security-enabled groups.")
        current = dict(zip(grp.sku_indices, grp.disabled_plans, strict=True))
        with self._lock:
            before = {u: {st.sku for st in t.user_states(u) if st.holds_seat} for u in grp.users}
            removed = {k: current[k] for k in removes}
            for k in removes:
                del current[k]
            current.update(adds)  # an add of an assigned SKU replaces its disabled plans
            order = sorted(current)
            new = dataclasses.replace(
                grp,
                sku_indices=tuple(order),
                disabled_plans=tuple(current[k] for k in order),
                processing_state=QUEUED if order or removes else grp.processing_state,
            )
            self._replace_group(new)
            pending = getattr(self, "_pending", None)
            if pending is None:
                pending = self._pending = {}
            earlier = pending.get(grp.index)
            if earlier is not None:  # changed again before processing finished: keep the first "before"
                before, removed = earlier.before, {**earlier.removed, **removed}
            pending[grp.index] = _Pending(max(1, self.processing_reads), before, removed)
        return {"@odata.context": self._context("groups/$entity"), **self._group_json(grp.index, None, False)}

    def _replace_group(self, new: GroupDef) -> None:
        groups = list(self.tenant.groups)
        groups[new.index] = new
        self.tenant.groups = tuple(groups)
        self._cache.clear()
        self._fragments.clear()
        self._error_groups = None

    # -------------------------------------------------------------- user assignLicense

    def _user_assign_license(
        self, req: Request, key: str, fault: FaultRule | None, request_id: str, client_id: str
    ) -> Response:
        """``POST /users/{id}/assignLicense`` (https://learn.microsoft.com/graph/api/user-assignlicense): the same
        ``addLicenses``/``removeLicenses`` body as the group's, answered ``200 OK`` with the updated user, done at
        once. It adds and removes *direct* assignments only: a licence the user holds only through a group cannot
        be removed here (Graph's wording is not documented: docs/graph-fidelity.md, "silent"), and removing a
        direct one leaves the inherited one intact."""
        if fault is not None:
            if fault.kind in ("reset", "timeout"):
                return Response(0, action=fault.kind, hold_s=fault.hold_s)
            return self._error(self._fault_error(fault), request_id, client_id)  # type: ignore[attr-defined]
        u = self.tenant.user_index(key)
        if u is None:
            return self._error(not_found(key), request_id, client_id)  # type: ignore[attr-defined]
        try:
            self._apply_user_assignment(u, req.body)
        except GraphError as exc:
            return self._error(exc, request_id, client_id)  # type: ignore[attr-defined]
        select = ("id", "displayName", "userPrincipalName", "accountEnabled", "assignedLicenses")
        body = {"@odata.context": self._context("users/$entity"), **self._user_json(u, select, False)}
        with self._lock:
            self._stats.by_status[200] += 1
        return Response(200, orjson.dumps(body), [("request-id", request_id), ("client-request-id", client_id)])

    def assign_direct(self, user_id: str, sku_id: str, disabled_plans: tuple[str, ...] = ()) -> None:
        """A direct assignment made before the story starts (the demo's members who had E3 directly): what user
        assignLicense does, without a caller (nothing outside the writing wing calls assignLicense)."""
        u = self.tenant.user_index(user_id)
        if u is None:
            raise KeyError(user_id)
        add = {"disabledPlans": list(disabled_plans), "skuId": sku_id}
        self._apply_user_assignment(u, orjson.dumps({"addLicenses": [add], "removeLicenses": []}))

    def _apply_user_assignment(self, u: int, raw: bytes) -> None:
        t = self.tenant
        adds, removes = self._read_body(raw)
        direct = set(t.direct.get(u, ()))
        held = {st.sku for st in t.user_states(u) if st.holds_seat}
        for k in sorted(removes):
            if k not in direct:
                if k in held:  # Sandbox assumption (docs/graph-fidelity.md): the wording is ours
                    raise bad_request(f"User license {t.skus[k].sku_id} is inherited from a group membership and "
                                      "cannot be removed directly from the user.")  # fmt: skip
                raise bad_request(f"User does not have a corresponding license {t.skus[k].sku_id}.")
        for k in sorted(adds):
            if k not in held and t.skus[k].available <= 0:
                raise bad_request(f"License {t.skus[k].sku_id}: there are not enough licenses to assign.")
        with self._lock:
            for k in removes:
                direct.discard(k)
                t.direct_disabled.pop((u, k), None)
            for k, plans in adds.items():
                direct.add(k)
                t.direct_disabled[(u, k)] = plans
            t.direct[u] = tuple(sorted(direct))
            after = {st.sku for st in t.user_states(u) if st.holds_seat}
            skus = list(t.skus)
            for k in held ^ after:
                skus[k] = dataclasses.replace(skus[k], consumed=max(0, skus[k].consumed + (1 if k in after else -1)))
            t.skus = tuple(skus)
            self._fragments.clear()
            self._error_groups = None

    def _read_body(self, raw: bytes) -> tuple[dict[int, tuple[str, ...]], set[int]]:
        """The assignLicense body as (SKU index -> disabled plan ids to add, SKU indices to remove)."""
        t = self.tenant
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            raise bad_request("Unable to read JSON request payload.", "RequestBodyRead") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("addLicenses"), list)
            or not isinstance(payload.get("removeLicenses"), list)
        ):
            # Both parameters appear in every example (an empty list when unused): the sandbox requires them.
            raise bad_request("addLicenses and removeLicenses are required (use [] for none).", "Request_BadRequest")
        by_id = {s.sku_id.lower(): k for k, s in enumerate(t.skus)}
        adds: dict[int, tuple[str, ...]] = {}
        for item in payload["addLicenses"]:
            sku = str(item.get("skuId", "")).lower() if isinstance(item, dict) else ""
            if sku not in by_id:
                raise bad_request(f"License {sku or '(none)'} does not correspond to a valid company License.")
            k = by_id[sku]
            plan_ids = {p.id.lower() for p in t.skus[k].plans}
            disabled = item.get("disabledPlans") or []
            if not isinstance(disabled, list) or any(str(p).lower() not in plan_ids for p in disabled):
                raise bad_request(f"A disabled plan is not a service plan of the license {sku}.")
            adds[k] = tuple(sorted({str(p).lower() for p in disabled}))
        removes: set[int] = set()
        for sku_ref in payload["removeLicenses"]:
            sku = str(sku_ref).lower()
            if sku not in by_id:
                raise bad_request(f"License {sku} does not correspond to a valid company License.")
            removes.add(by_id[sku])
        if removes & adds.keys():
            raise bad_request("The same license cannot be added and removed in one call.")
        return adds, removes

    # -------------------------------------------------------------- reprocessLicenseAssignment

    def _reprocess(self, key: str, fault: FaultRule | None, request_id: str, client_id: str) -> Response:
        """``POST /users/{id}/reprocessLicenseAssignment`` (https://learn.microsoft.com/graph/api/user-
        reprocesslicenseassignment): "Reprocess all group-based license assignments for the user"; no request body;
        200 with the updated user. Sandbox assumption: the reprocessing is done by the time it answers."""
        if fault is not None:
            if fault.kind in ("reset", "timeout"):
                return Response(0, action=fault.kind, hold_s=fault.hold_s)
            return self._error(self._fault_error(fault), request_id, client_id)  # type: ignore[attr-defined]
        u = self.tenant.user_index(key)
        if u is None:
            return self._error(not_found(key), request_id, client_id)  # type: ignore[attr-defined]
        with self._lock:
            self._reprocess_user(u)
        select = ("id", "displayName", "userPrincipalName", "accountEnabled", "assignedLicenses")
        body = {"@odata.context": self._context("users/$entity"), **self._user_json(u, select, False)}
        return Response(200, orjson.dumps(body), [("request-id", request_id), ("client-request-id", client_id)])

    def _reprocess_user(self, u: int) -> None:
        """Each processed group of the user whose products failed for want of seats is tried again, all or nothing,
        against the seats free now. Errors of other causes (usage location, conflicts) stay until their cause goes."""
        t = self.tenant
        for g in t.user_groups(u):
            grp = t.groups[g]
            failed = [k for k in grp.sku_indices if t.errors.get((u, g, k)) == "CountViolation"]
            if (
                not grp.processed
                or not failed
                or any(t.errors.get((u, g, k)) not in (None, "CountViolation") for k in grp.sku_indices)
            ):
                continue
            held = {st.sku for st in t.user_states(u) if st.holds_seat and st.group != g}
            need = [k for k in grp.sku_indices if k not in held and t.errors.get((u, g, k)) == "CountViolation"]
            if any(t.skus[k].available <= 0 for k in need):
                continue
            for k in failed:
                del t.errors[(u, g, k)]
            skus = list(t.skus)
            for k in need:
                skus[k] = dataclasses.replace(skus[k], consumed=skus[k].consumed + 1)
            t.skus = tuple(skus)
        self._fragments.clear()
        self._error_groups = None

    # -------------------------------------------------------------- background processing

    def _tick(self, key: str) -> None:
        """A read of the group: its processing moves one step."""
        pending = getattr(self, "_pending", None)
        if not pending:
            return
        grp = self.tenant.group_by_id(key)
        if grp is None or grp.index not in pending:
            return
        with self._lock:
            job = pending[grp.index]
            job.reads_left -= 1
            if job.reads_left > 0:
                self._replace_group(dataclasses.replace(grp, processing_state=IN_PROGRESS))
                return
            del pending[grp.index]
            self._complete(grp, job)

    def settle(self) -> None:
        """Finish every pending group's processing now (tests, the demo)."""
        pending = getattr(self, "_pending", None) or {}
        with self._lock:
            for g in sorted(pending):
                job = pending.pop(g)
                self._complete(self.tenant.groups[g], job)

    def pending_groups(self) -> tuple[str, ...]:
        return tuple(self.tenant.groups[g].id for g in sorted(getattr(self, "_pending", None) or {}))

    def _enabled_plans(self, u: int, skip_group: int) -> set[str]:
        """Names of the service plans the user's other assignments enable."""
        t = self.tenant
        out: set[str] = set()
        for st in t.user_states(u):
            if not st.holds_seat or (st.group == skip_group and not st.active):
                continue
            disabled: tuple[str, ...] = t.direct_disabled.get((u, st.sku), ()) if st.group == NO_GROUP else ()
            if st.group != NO_GROUP and not st.active:
                grp = t.groups[st.group]
                disabled = grp.disabled_plans[grp.sku_indices.index(st.sku)]
            out |= {p.name for p in t.skus[st.sku].plans if p.id not in disabled}
        return out

    def _complete(self, grp: GroupDef, job: _Pending) -> None:
        t = self.tenant
        g = grp.index
        for stale in [e for e in t.errors if e[1] == g]:
            del t.errors[stale]
        # Removals first: a member keeps a removed product another one depends on (ActiveWithError).
        for k, was_disabled in job.removed.items():
            gives = {p.name for p in t.skus[k].plans if p.id not in was_disabled}
            for u in grp.users:
                if k not in job.before.get(u, set()):
                    continue
                others = self._enabled_plans(u, g)
                if any(need in gives and need not in others and dep in others for dep, need in DEPENDENT_PLANS.items()):
                    t.removed[u] = (*t.removed.get(u, ()), (g, k, "DependencyViolation"))
        # Then the group's products, all or nothing per member, seats handed out in member order.
        other: dict[int, set[int]] = {}
        for u in grp.users:
            other[u] = {st.sku for st in t.user_states(u) if st.holds_seat and (st.group != g or st.active)}
        free = {k: t.skus[k].available for k in grp.sku_indices}
        for k in grp.sku_indices:
            free[k] += sum(1 for u in grp.users if k in job.before.get(u, set()) and k not in other[u])
        names = {k: t.skus[k].part_number for k in range(len(t.skus))}
        plans_off = dict(zip(grp.sku_indices, grp.disabled_plans, strict=True))
        for u in grp.users:
            # Per product, why it cannot be assigned; all or nothing: the group's other products then fail too,
            # recorded as CountViolation as the generated tenant does (docs/graph-fidelity.md, "silent").
            failed: dict[int, str] = {}
            if t.locations[u] == PROHIBITED_LOCATION:
                failed = dict.fromkeys(grp.sku_indices, "ProhibitedInUsageLocationViolation")
            else:
                enabled_elsewhere = self._enabled_plans(u, g)
                held = {names[k] for k in other[u]}
                for k in grp.sku_indices:
                    mine = {p.name for p in t.skus[k].plans if p.id not in plans_off[k]}
                    for a, b in MUTUALLY_EXCLUSIVE_SKUS:
                        rival = b if names[k] == a else a if names[k] == b else None
                        if rival in held and CONFLICTING_PLAN in mine and CONFLICTING_PLAN in enabled_elsewhere:
                            failed[k] = "MutuallyExclusiveViolation"
            need = [k for k in grp.sku_indices if k not in other[u]]
            if not failed:
                failed = {k: "CountViolation" for k in need if free[k] <= 0}
            if failed:
                for k in grp.sku_indices:
                    t.errors[(u, g, k)] = failed.get(k, "CountViolation")
            else:
                for k in need:
                    free[k] -= 1
        self._replace_group(dataclasses.replace(grp, processing_state=PROCESSING_COMPLETE))
        t.processed_at[g] = t.as_of  # the members' lastUpdatedDateTime: the tenant's now, not the wall clock
        # consumedUnits follows the seats held (Graph counts every active assignment once per user).
        after = {u: {st.sku for st in t.user_states(u) if st.holds_seat} for u in grp.users}
        skus = list(t.skus)
        for k in range(len(skus)):
            delta = sum(k in after[u] for u in grp.users) - sum(k in job.before.get(u, set()) for u in grp.users)
            if delta:
                skus[k] = dataclasses.replace(skus[k], consumed=max(0, skus[k].consumed + delta))
        t.skus = tuple(skus)
        self._fragments.clear()
        self._error_groups = None
