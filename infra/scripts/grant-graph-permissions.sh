#!/usr/bin/env bash
# Grant the function app's managed identity the Microsoft Graph application permissions it needs
# (docs/design.md "Least privilege"), idempotently: app role ids are looked up by value on the tenant's
# Microsoft Graph service principal at run time, and permissions already granted are skipped.
#
# Needs: az CLI signed in (az login) as Privileged Role Administrator (or Global Administrator, or
# an identity with AppRoleAssignment.ReadWrite.All + Application.Read.All). National clouds: run
# `az cloud set --name AzureUSGovernment|AzureChinaCloud` first; the Graph endpoint follows it.
#
# Usage: infra/scripts/grant-graph-permissions.sh [--principal-id OBJECT_ID]
#            [--license-permission LicenseAssignment.Read.All|Organization.Read.All]
#            [--mail-send-directory-wide] [--dry-run]
# Without --principal-id it reads AZURE_MANAGED_IDENTITY_PRINCIPAL_ID from the environment or
# from `azd env get-values` (an output of infra/main.bicep).
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
principal_id="${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-}"
license_permission="LicenseAssignment.Read.All"
mail_send=false
dry_run=false

die() { echo "error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --principal-id) principal_id="${2:-}"; shift 2 ;;
    --license-permission) license_permission="${2:-}"; shift 2 ;;
    --mail-send-directory-wide) mail_send=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

case "$license_permission" in
  LicenseAssignment.Read.All|Organization.Read.All) ;;
  *) die "--license-permission must be LicenseAssignment.Read.All or Organization.Read.All" ;;
esac

if [ -z "$principal_id" ] && command -v azd >/dev/null 2>&1; then
  principal_id="$(azd env get-value AZURE_MANAGED_IDENTITY_PRINCIPAL_ID 2>/dev/null || true)"
fi
[[ "$principal_id" =~ ^[0-9a-fA-F-]{36}$ ]] || die "no managed identity principal id: pass --principal-id or run 'azd up' first"

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is required"

# Read-only permissions; Mail.Send only on explicit request (prefer Exchange RBAC for Applications,
# docs/deploy.md: then this directory-wide grant must NOT be given).
# Organization.Read.All always: /directory/subscriptions (renewal dates) and /organization (tenant id, name) need it.
permissions=("$license_permission")
[ "$license_permission" = "Organization.Read.All" ] || permissions+=("Organization.Read.All")
permissions+=("GroupMember.Read.All" "User.Read.All")
if $mail_send; then
  echo "warning: Mail.Send granted directory-wide lets the app send as ANY mailbox; prefer Exchange RBAC for Applications" >&2
  permissions+=("Mail.Send")
fi

graph_url="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
graph_url="${graph_url%/}"
graph_sp_id="$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)"
[ -n "$graph_sp_id" ] || die "Microsoft Graph service principal not found in this tenant"

# The identity's current grants on Microsoft Graph, one app role id per line.
existing="$(az rest --method GET \
  --url "$graph_url/v1.0/servicePrincipals/$principal_id/appRoleAssignments?\$top=999" \
  --query "value[?resourceId=='$graph_sp_id'].appRoleId" -o tsv)"

for permission in "${permissions[@]}"; do
  role_id="$(az ad sp show --id "$GRAPH_APP_ID" \
    --query "appRoles[?value=='$permission' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)"
  [ -n "$role_id" ] || die "Microsoft Graph has no application permission named $permission"
  if grep -qix "$role_id" <<<"$existing"; then
    echo "already granted: $permission"
    continue
  fi
  if $dry_run; then
    echo "would grant: $permission ($role_id)"
    continue
  fi
  az rest --method POST \
    --url "$graph_url/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\":\"$principal_id\",\"resourceId\":\"$graph_sp_id\",\"appRoleId\":\"$role_id\"}" \
    --output none
  echo "granted: $permission"
done
echo "done: tokens issued from now on carry these roles (a running app may hold an older token for up to 24 h; restart it)"
