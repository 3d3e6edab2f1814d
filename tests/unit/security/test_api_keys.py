from __future__ import annotations

import pytest

from hartonomous.security import InvalidApiKeyError, issue_api_key, parse_api_key, secret_matches


def test_issued_token_parses_back_and_matches_only_its_hash() -> None:
    issued = issue_api_key()
    key_id, secret = parse_api_key(issued.token)
    assert key_id == issued.key_id
    assert secret not in issued.secret_sha256.hex()
    assert secret_matches(secret, issued.secret_sha256)
    assert not secret_matches(secret + "x", issued.secret_sha256)


def test_tokens_are_unique() -> None:
    assert len({issue_api_key().token for _ in range(100)}) == 100


@pytest.mark.parametrize("token", ["", "hk", "hk_short_secret", "xx_0123456789abcdef_s"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidApiKeyError):
        parse_api_key(token)
