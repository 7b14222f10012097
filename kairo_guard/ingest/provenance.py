"""What the middleware knows about one request's content, for the handler to use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kairo_guard.core.content import content_digest
from kairo_guard.core.types import DataClass, TenantId

if TYPE_CHECKING:
    from kairo_guard.guard import Guard


class RequestProvenance:
    """The tenant of a request and, once its body is read, the body's seal.

    Found at ``scope["kairo_guard"]`` (Starlette: ``request.scope["kairo_guard"]``).
    """

    __slots__ = ("_guard", "_source", "complete", "digest", "seal", "size", "tenant")

    def __init__(
        self,
        guard: Guard,
        tenant: TenantId,
        source: str,
        *,
        size: int = 0,
        digest: str | None = None,
        seal: str | None = None,
    ) -> None:
        self._guard = guard
        self._source = source
        self.tenant = tenant
        self.size = size
        self.complete = digest is not None
        """True once the whole body is durable in the spool (given its digest)."""
        self.digest = digest
        self.seal = seal
        """The body's seal: set once the whole body was received, None for empty bodies."""

    def finish(self, digest: str, seal: str | None) -> None:
        """Record the complete body's digest and its seal (None for an empty body),
        once the body is durable in the ingestion spool (whose indexer records its
        provenance row)."""
        self.complete = True
        self.digest = digest
        self.seal = seal

    def seal_content(self, content: Any, *, source: str | None = None) -> str:
        """Seal content derived from this request (a parsed document, an agent's output)
        as the tenant's customer content, indexed in the fingerprint net, and record it
        as a provenance row.

        Content whose digest is the body's is the body the middleware already spooled
        for indexing: its seal is the body's (under another source, a seal of the
        spooled body, audited). Anything else (a record built from the body, an agent's
        output) is indexed before it is sealed; that fingerprints and writes to the
        store, so an async handler sealing large content may rather call this in a
        thread (``run_in_threadpool``).

        Raises:
            ContentError: if the content cannot be digested.
            StoreError: if it cannot be indexed or recorded (then it is not sealed).
        """
        sealer, source = self._guard.sealer, source or self._source
        if self.seal is not None and content_digest(content) == self.digest:
            if source == self._source:
                return self.seal  # (its provenance row is the indexer's)
            seal = sealer.seal_spooled(self.digest, tenant=self.tenant, source=source, again=True)
        else:
            seal = sealer.seal(
                content, tenant=self.tenant, data_class=DataClass.CUSTOMER_CONTENT, source=source
            )
        self._guard.tenancy.retention.record_provenance(seal)
        return seal
