"""Tenants, principals, API keys (and later access policy and rate limits)."""

from hartonomous.security.api_keys import (
    InvalidApiKeyError,
    IssuedApiKey,
    issue_api_key,
    parse_api_key,
    secret_matches,
)
from hartonomous.security.principals import create_api_key, ensure_principal, ensure_tenant

__all__ = [
    "InvalidApiKeyError",
    "IssuedApiKey",
    "create_api_key",
    "ensure_principal",
    "ensure_tenant",
    "issue_api_key",
    "parse_api_key",
    "secret_matches",
]
