"""Reading Microsoft Graph: the client (adapter, retries, paging, $batch), the snapshot reader, permission checks.

Importing this package does not import msgraph-sdk, kiota or azure-identity: they are loaded
when a client is created (cold start of the Function App).
"""

from __future__ import annotations

from licensing.graph.client import CollectionRequest, GraphClient, open_graph
from licensing.graph.group_scope import read_snapshot
from licensing.graph.permissions import PermissionCheck, check_permissions
from licensing.graph.reader import ProgressFn
from licensing.graph.retry import RetryPolicy, parse_retry_after

__all__ = [
    "CollectionRequest",
    "GraphClient",
    "PermissionCheck",
    "ProgressFn",
    "RetryPolicy",
    "check_permissions",
    "open_graph",
    "parse_retry_after",
    "read_snapshot",
]
