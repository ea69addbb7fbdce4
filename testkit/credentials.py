"""Token credentials that Azurite's ``--oauth basic`` accepts, without any identity provider.

Azurite checks a Bearer token's issuer (``https://sts.windows.net/<tenant>/``), audience
(``https://storage.azure.com``) and expiry, not its signature, and derives user delegation
keys from ``oid``/``tid``; an unsigned JWT (``alg: none``) therefore works.

:class:`FakeTokenCredential` follows azure.core's async protocols (``AsyncTokenCredential``
and ``AsyncSupportsTokenInfo``), for the ``aio`` clients the app uses;
:meth:`FakeTokenCredential.sync` returns a view following the sync ``TokenCredential`` and
``SupportsTokenInfo`` protocols (one class cannot do both: the protocols share the method
name ``get_token``, once ``async`` and once not). Both count the tokens they issue.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

STORAGE_AUDIENCE = "https://storage.azure.com"


def _b64url(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode("ascii")


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a token a :class:`FakeTokenCredential` issued (``{}`` for anything else)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def unsigned_token(
    *, tenant_id: str, object_id: str, audience: str, lifetime_seconds: int
) -> AccessTokenInfo:
    """An unsigned JWT (``alg: none``) for ``audience``, issued now by Entra ID's v1 issuer
    of ``tenant_id`` to the identity ``object_id``."""
    now = int(time.time())
    expires_on = now + lifetime_seconds
    claims = {
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "aud": audience,
        "iat": now,
        "nbf": now - 60,
        "exp": expires_on,
        "oid": object_id,
        "tid": tenant_id,
    }
    token = f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."
    return AccessTokenInfo(token, expires_on)


@dataclass
class _TokenIssuer:
    tenant_id: str
    object_id: str
    lifetime_seconds: int
    audience: str | None
    scopes_requested: list[tuple[str, ...]] = field(default_factory=list)

    def issue(self, scopes: tuple[str, ...]) -> AccessTokenInfo:
        self.scopes_requested.append(scopes)
        audience = self.audience or (scopes[0].removesuffix("/.default") if scopes else STORAGE_AUDIENCE)
        return unsigned_token(
            tenant_id=self.tenant_id,
            object_id=self.object_id,
            audience=audience,
            lifetime_seconds=self.lifetime_seconds,
        )


class FakeTokenCredential:
    """An async Entra ID credential issuing unsigned storage tokens for one fixed identity.

    ``tokens_issued`` counts ``get_token``/``get_token_info`` calls (through either view);
    ``scopes_requested`` records the scopes of each.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        object_id: str | None = None,
        lifetime_seconds: int = 3600,
        audience: str | None = None,
    ) -> None:
        """A new identity (random ``tid``/``oid`` unless given). Each token's audience is
        its scope's resource (``https://storage.azure.com`` for Storage,
        ``https://cognitiveservices.azure.com`` for Azure OpenAI) unless ``audience`` fixes
        one (another audience makes tokens Storage rejects)."""
        self._issuer = _TokenIssuer(
            tenant_id=tenant_id or str(uuid.uuid4()),
            object_id=object_id or str(uuid.uuid4()),
            lifetime_seconds=lifetime_seconds,
            audience=audience,
        )
        self.closed = False

    @property
    def tenant_id(self) -> str:
        """The ``tid`` claim (and the ``sktid`` of delegation SAS signed with its keys)."""
        return self._issuer.tenant_id

    @property
    def object_id(self) -> str:
        """The ``oid`` claim (and the ``skoid`` of delegation SAS signed with its keys)."""
        return self._issuer.object_id

    @property
    def tokens_issued(self) -> int:
        """How many tokens were handed out so far."""
        return len(self._issuer.scopes_requested)

    @property
    def scopes_requested(self) -> list[tuple[str, ...]]:
        """The scopes of each token request, in order."""
        return list(self._issuer.scopes_requested)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """``AsyncTokenCredential.get_token``."""
        info = self._issuer.issue(scopes)
        return AccessToken(info.token, info.expires_on)

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """``AsyncSupportsTokenInfo.get_token_info``."""
        return self._issuer.issue(scopes)

    async def close(self) -> None:
        """Nothing to release; remembers that it was called."""
        self.closed = True

    async def __aenter__(self) -> FakeTokenCredential:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def sync(self) -> SyncFakeTokenCredential:
        """The same identity and counter behind the sync ``TokenCredential`` protocol."""
        return SyncFakeTokenCredential(self._issuer)


class SyncFakeTokenCredential:
    """Sync view of a :class:`FakeTokenCredential` (``TokenCredential`` / ``SupportsTokenInfo``)."""

    def __init__(self, issuer: _TokenIssuer) -> None:
        self._issuer = issuer

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """``TokenCredential.get_token``."""
        info = self._issuer.issue(scopes)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """``SupportsTokenInfo.get_token_info``."""
        return self._issuer.issue(scopes)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SyncFakeTokenCredential:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
