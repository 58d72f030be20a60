"""Group License Audit: audits Microsoft Entra ID group-based licensing."""
