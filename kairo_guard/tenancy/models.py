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
from pathlib import Path
from typing import TYPE_CHECKING

from kairo_guard.core.exceptions import RegistryError as RegistryError  # re-exported here
from kairo_guard.core.exceptions import StoreError
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import TenantId, validate_tenant
from kairo_guard.store.datasets import MODEL_ACTIVE, ModelInfo
from kairo_guard.tenancy.datasets import VerifiedDataset, fine_tune_agreement, load_manifest
from kairo_guard.tenancy.manifest import DatasetError, Manifest, verify_manifest

if TYPE_CHECKING:
    from kairo_guard.guard import Guard

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


def _refuse(guard: Guard, model_id: str, rule: str, message: str) -> RegistryError:
    guard.audit.append({"event": "model.refused", "model": model_ref(model_id), "rule": rule})
    return RegistryError(rule, message)


def _manifest_of(guard: Guard, dataset: Manifest | VerifiedDataset | str | Path) -> Manifest:
    if isinstance(dataset, VerifiedDataset):
        return dataset.manifest
    if isinstance(dataset, Manifest):
        return dataset
    if isinstance(dataset, str) and not Path(dataset).is_dir():
        info = guard.store.get_dataset(dataset)
        if info is None:
            raise DatasetError("dataset.unknown", f"no dataset {dataset!r}")
        return load_manifest(info.path)
    return load_manifest(Path(dataset))


def register_model(
    guard: Guard,
    model_id: str,
    *,
    dataset: Manifest | VerifiedDataset | str | Path,
    owner: TenantId,
) -> ModelInfo:
    """Register a tenant's fine-tuned model; see :meth:`Guard.register_model`."""
    _valid_model_id(model_id)
    validate_tenant(owner)
    try:
        manifest = _manifest_of(guard, dataset)
        verify_manifest(guard.keys, manifest)
    except DatasetError as exc:
        raise _refuse(guard, model_id, exc.rule, exc.reason) from exc
    if manifest.tenant != owner:
        raise _refuse(
            guard, model_id, "model.owner-mismatch", "the dataset belongs to another tenant"
        )
    info = guard.store.get_dataset(manifest.dataset_id)
    if info is None or info.tenant != owner:
        raise _refuse(guard, model_id, "dataset.unknown", "the dataset is not recorded")
    if fine_tune_agreement(guard, owner, manifest.agreement_id) is None:
        raise _refuse(
            guard,
            model_id,
            "dataset.agreement-inactive",
            "the dataset's agreement is revoked, expired or out of scope",
        )
    return _add(guard, model_id, owner=owner, dataset=manifest, sink=None)


def register_shared_model(
    guard: Guard,
    model_id: str,
    *,
    sink: Sink | str,
    dataset: Manifest | VerifiedDataset | str | Path | None = None,
) -> ModelInfo:
    """Register a model served to everyone; see :meth:`Guard.register_shared_model`."""
    _valid_model_id(model_id)
    if dataset is not None:
        raise _refuse(
            guard,
            model_id,
            "model.tenant-derived",
            "a model built from a tenant dataset can never be registered as shared",
        )
    resolved = guard.resolve_sink(sink)
    if not resolved.kind.shared:
        raise _refuse(
            guard,
            model_id,
            "model.tenant-derived",
            f"sink {resolved.name!r} is a tenant fine-tune: its models are never shared",
        )
    return _add(
        guard, model_id, owner=None, dataset=None, sink=f"{resolved.name} ({resolved.kind})"
    )


def _add(
    guard: Guard,
    model_id: str,
    *,
    owner: TenantId | None,
    dataset: Manifest | None,
    sink: str | None,
) -> ModelInfo:
    existing = guard.store.get_model(model_id)
    if existing is not None:
        rule = (
            "model.tenant-derived"
            if existing.owner is not None and owner is None
            else ("model.exists")
        )
        raise _refuse(guard, model_id, rule, f"model {model_id!r} is already registered")
    info = ModelInfo(
        model_id=model_id,
        owner=owner,
        dataset=dataset.dataset_id if dataset is not None else None,
        registered_at=guard.clock(),
        status=MODEL_ACTIVE,
        manifest_digest=dataset.digest if dataset is not None else None,
        sink=sink,
    )
    guard.store.add_model(info)
    guard.audit.append(
        {
            "event": "model.register",
            "model": model_ref(model_id),
            "owner": guard.keys.pseudonym(owner) if owner else None,
            "dataset": info.dataset,
            "manifest": info.manifest_digest,
            "shared": owner is None,
        }
    )
    return info


def check_model_access(guard: Guard, model_id: str, tenant: TenantId) -> bool:
    """Say whether ``tenant`` may call ``model_id``; see :meth:`Guard.check_model_access`."""
    try:
        info = guard.store.get_model(model_id)
    except StoreError:
        info = None  # fail closed: no proof of ownership, no access
    allowed = (
        info is not None
        and info.status == MODEL_ACTIVE
        and (info.owner is None or info.owner == tenant)
    )
    if not allowed:
        guard.audit.append(
            {
                "event": "model.access-denied",
                "model": model_ref(model_id),
                "tenant": guard.keys.pseudonym(tenant),
                "reason": _denial(info),
            }
        )
    return allowed


def _denial(info: ModelInfo | None) -> str:
    if info is None:
        return "unknown"
    return info.status if info.status != MODEL_ACTIVE else "other-tenant"


def mark_models_for_deletion(guard: Guard, tenant: TenantId) -> int:
    """Mark the tenant's models ``pending_deletion``; see the Guard method."""
    pseudonym = guard.keys.pseudonym(validate_tenant(tenant))
    count = guard.store.mark_models_for_deletion(tenant, pseudonym)
    guard.audit.append({"event": "models.mark-deletion", "models": count})
    return count


def list_models(guard: Guard, tenant: TenantId | None) -> list[ModelInfo]:
    """Return models, or a tenant's (marked ones are listed under its pseudonym)."""
    if tenant is None:
        return guard.store.list_models()
    return guard.store.list_models((tenant, guard.keys.pseudonym(tenant)))


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
