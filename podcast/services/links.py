"""Fresh read-only links on a stored narration's 200 body: the one signer every path uses
(a reused result, a finished job, a lookup by id)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from podcast.wire import NarrationResponse

__all__ = ["Signer", "signed"]


class Signer(Protocol):
    """Signs read-only links (:class:`~podcast.storage.blobs.BlobStore`)."""

    async def read_url(self, blob_name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        """A read-only link to ``blob_name`` and the moment it stops working (UTC)."""
        ...


async def signed(signer: Signer, result: NarrationResponse, sas_expiry_minutes: int) -> NarrationResponse:
    """``result`` (a stored body, without links) with fresh read-only links to its audio and,
    when it has them, its captions, valid for ``sas_expiry_minutes``."""
    expires_in = timedelta(minutes=sas_expiry_minutes)
    url, expires_at = await signer.read_url(result.blob_name, expires_in=expires_in)
    linked = result.with_link(url, expires_at)
    if result.captions_blob_name is not None:
        captions_url, _ = await signer.read_url(result.captions_blob_name, expires_in=expires_in)
        linked = linked.model_copy(update={"captions_url": captions_url})
    return linked
