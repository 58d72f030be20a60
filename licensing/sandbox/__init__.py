"""A simulated Microsoft Graph tenant served over real HTTP, for the demo, the tests and the benchmarks."""

from __future__ import annotations

from licensing.sandbox.faults import FaultRule, Faults, parse_faults
from licensing.sandbox.generate import generate_tenant
from licensing.sandbox.server import SandboxServer, ground_truth_json, serve
from licensing.sandbox.tenant import ExpectedFinding, SandboxTenant, TenantSpec

__all__ = [
    "ExpectedFinding",
    "FaultRule",
    "Faults",
    "SandboxServer",
    "SandboxTenant",
    "TenantSpec",
    "generate_tenant",
    "ground_truth_json",
    "parse_faults",
    "serve",
]
