"""The model registry: which tenant owns a model, and who may call it.

A model fine-tuned on a tenant dataset is registered to that tenant with the manifest
it came from (which must verify and whose agreement must still be active); it is served
to that tenant only. A shared model is registered from a shared sink; a model built
from any tenant's dataset can never be registered as shared. Erasure marks a tenant's
models ``pending_deletion`` (keeping only the owner's pseudonym): they are served to
no one. Every registration, refusal and denied access is audited (model ids as
digests: they may name the tenant).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from kairo_guard.core.exceptions import RegistryError as RegistryError  # re-exported here
from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import AuditAppender, TenantId, validate_tenant
from kairo_guard.store.base import MODEL_ACTIVE, ModelInfo, Store
from kairo_guard.tenancy.agreements import Agreements
from kairo_guard.tenancy.datasets import VerifiedDataset, load_manifest
from kairo_guard.tenancy.manifest import DatasetError, Manifest, ManifestSigner

MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,255}")
_PARAM = "{model_id}"


def model_ref(model_id: str) -> str:
    """The model id as written to the audit log: a digest (ids may name the tenant)."""
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:32]


def _valid_model_id(model_id: object) -> str:
    if not isinstance(model_id, str) or MODEL_ID_PATTERN.fullmatch(model_id) is None:
        raise ValueError(
            f"invalid model id {model_id!r}: 1-256 of A-Z a-z 0-9 . _ : @ / + -, "
            "starting with a letter or digit"
        )
    return model_id


class ModelRegistry:
    """Which tenant owns a model, and who may call it (see the module docstring).

    Args:
        store: where models are recorded.
        audit: where registrations, refusals and denials are recorded.
        pseudonym: tenant id -> keyed pseudonym.
        clock: Unix-seconds clock.
        signer: verifies dataset manifests.
        agreements: which agreement permits a tenant's fine-tune.
        resolve_sink: returns the sink a name stands for (the sink checks' ``resolve``).
    """

    def __init__(
        self,
        *,
        store: Store,
        audit: AuditAppender,
        pseudonym: Callable[[TenantId], str],
        clock: Callable[[], float],
        signer: ManifestSigner,
        agreements: Agreements,
        resolve_sink: Callable[[Sink | str], Sink],
    ) -> None:
        self._store = store
        self._audit = audit
        self._pseudonym = pseudonym
        self._clock = clock
        self._signer = signer
        self._agreements = agreements
        self._resolve_sink = resolve_sink

    def _refuse(self, model_id: str, rule: str, message: str) -> RegistryError:
        self._audit.append({"event": "model.refused", "model": model_ref(model_id), "rule": rule})
        return RegistryError(rule, message)

    def _manifest_of(self, dataset: Manifest | VerifiedDataset | str | Path) -> Manifest:
        if isinstance(dataset, VerifiedDataset):
            return dataset.manifest
        if isinstance(dataset, Manifest):
            return dataset
        if isinstance(dataset, str) and not Path(dataset).is_dir():
            info = self._store.get_dataset(dataset)
            if info is None:
                raise DatasetError("dataset.unknown", f"no dataset {dataset!r}")
            return load_manifest(info.path)
        return load_manifest(Path(dataset))

    def register(
        self, model_id: str, *, dataset: Manifest | VerifiedDataset | str | Path, owner: TenantId
    ) -> ModelInfo:
        """Register a model fine-tuned on ``owner``'s dataset (a manifest, verified
        dataset, dataset id or directory); the manifest must verify and its agreement
        still be active.

        Raises:
            RegistryError: refused (audited); ValueError: a bad model id or tenant.
        """
        _valid_model_id(model_id)
        validate_tenant(owner)
        try:
            manifest = self._manifest_of(dataset)
            self._signer.verify(manifest)
        except DatasetError as exc:
            raise self._refuse(model_id, exc.rule, exc.reason) from exc
        if manifest.tenant != owner:
            raise self._refuse(
                model_id, "model.owner-mismatch", "the dataset belongs to another tenant"
            )
        info = self._store.get_dataset(manifest.dataset_id)
        if info is None or info.tenant != owner:
            raise self._refuse(model_id, "dataset.unknown", "the dataset is not recorded")
        if self._agreements.for_fine_tune(owner, manifest.agreement_id) is None:
            raise self._refuse(
                model_id,
                "dataset.agreement-inactive",
                "the dataset's agreement is revoked, expired or out of scope",
            )
        return self._add(model_id, owner=owner, dataset=manifest, sink=None)

    def register_shared(
        self,
        model_id: str,
        *,
        sink: Sink | str,
        dataset: Manifest | VerifiedDataset | str | Path | None = None,
    ) -> ModelInfo:
        """Register a model served to every tenant, trained at the shared ``sink``.

        ``dataset`` is lineage a pipeline may declare: any tenant dataset is refused.

        Raises:
            RegistryError: a tenant fine-tune sink, a tenant dataset, or the id of a
                tenant model (``model.tenant-derived``, audited).
        """
        _valid_model_id(model_id)
        if dataset is not None:
            raise self._refuse(
                model_id,
                "model.tenant-derived",
                "a model built from a tenant dataset can never be registered as shared",
            )
        resolved = self._resolve_sink(sink)
        if not resolved.kind.shared:
            raise self._refuse(
                model_id,
                "model.tenant-derived",
                f"sink {resolved.name!r} is a tenant fine-tune: its models are never shared",
            )
        label = f"{resolved.name} ({resolved.kind})"
        return self._add(model_id, owner=None, dataset=None, sink=label)

    def _add(
        self,
        model_id: str,
        *,
        owner: TenantId | None,
        dataset: Manifest | None,
        sink: str | None,
    ) -> ModelInfo:
        existing = self._store.get_model(model_id)
        if existing is not None:
            tenant_model = existing.owner is not None and owner is None
            rule = "model.tenant-derived" if tenant_model else "model.exists"
            raise self._refuse(model_id, rule, f"model {model_id!r} is already registered")
        info = ModelInfo(
            model_id=model_id,
            owner=owner,
            dataset=dataset.dataset_id if dataset is not None else None,
            registered_at=self._clock(),
            status=MODEL_ACTIVE,
            manifest_digest=dataset.digest if dataset is not None else None,
            sink=sink,
        )
        self._store.add_model(info)
        self._audit.append(
            {
                "event": "model.register",
                "model": model_ref(model_id),
                "owner": self._pseudonym(owner) if owner else None,
                "dataset": info.dataset,
                "manifest": info.manifest_digest,
                "shared": owner is None,
            }
        )
        return info

    def may_call(self, model_id: str, tenant: TenantId) -> bool:
        """True if ``tenant`` may call ``model_id``: its own or a shared model, not marked
        for deletion. False for unknown models or when unsure; denials are audited."""
        try:
            info = self._store.get_model(model_id)
        except StoreError:
            info = None  # fail closed: no proof of ownership, no access
        allowed = (
            info is not None
            and info.status == MODEL_ACTIVE
            and (info.owner is None or info.owner == tenant)
        )
        if not allowed:
            self._audit.append(
                {
                    "event": "model.access-denied",
                    "model": model_ref(model_id),
                    "tenant": self._pseudonym(tenant),
                    "reason": _denial(info),
                }
            )
        return allowed

    def mark_for_deletion(self, tenant: TenantId) -> int:
        """Mark ``tenant``'s models ``pending_deletion`` (served to no one); return how many."""
        pseudonym = self._pseudonym(validate_tenant(tenant))
        count = self._store.mark_models_for_deletion(tenant, pseudonym)
        self._audit.append({"event": "models.mark-deletion", "models": count})
        return count

    def list_models(self, tenant: TenantId | None = None) -> list[ModelInfo]:
        """Return models, or a tenant's (marked ones are listed under its pseudonym)."""
        if tenant is None:
            return self._store.list_models()
        return self._store.list_models((tenant, self._pseudonym(tenant)))


def _denial(info: ModelInfo | None) -> str:
    if info is None:
        return "unknown"
    return info.status if info.status != MODEL_ACTIVE else "other-tenant"


class ModelRoutes:
    """Inference route templates such as ``/v1/models/{model_id}/infer``.

    ``{model_id}`` matches one or more path segments (ids such as ``org/name``); the
    rest matches literally (a trailing ``/`` is ignored). Declare every route that
    takes a model id: a path that matches no template is not checked.

    Raises:
        ValueError: for a template without exactly one ``{model_id}``.
    """

    def __init__(self, templates: tuple[str, ...] | list[str]) -> None:
        patterns = []
        for template in templates:
            if template.count(_PARAM) != 1 or not template.startswith("/"):
                raise ValueError(
                    f"model route {template!r} must start with / and hold {_PARAM} once"
                )
            head, tail = template.split(_PARAM)
            patterns.append(re.compile(f"{re.escape(head)}(.+){re.escape(tail)}"))
        self._patterns = tuple(patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def model_for(self, path: str) -> str | None:
        """Return the model id a request path names, or None if no route matches."""
        if len(path) > 1:
            path = path.rstrip("/")
        for pattern in self._patterns:
            match = pattern.fullmatch(path)
            if match is not None:
                return match.group(1)
        return None
