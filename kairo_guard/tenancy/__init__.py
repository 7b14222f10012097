"""What a tenant owns: agreements, datasets and manifests, models, retention, erasure
and export (invariants I2 and I8).

One service per capability, each taking the collaborators it needs as constructor
arguments (store, audit log, pseudonym function, clock, seal codec, manifest signer,
sink checks), never the :class:`~kairo_guard.guard.Guard`: :class:`.agreements.Agreements`,
:class:`.dataset_service.DatasetService` (build, open, prune, delete),
:class:`.dataset_admission.DatasetAdmission` (a verified dataset at a sink),
:class:`.models.ModelRegistry`, :class:`.retention.Retention`, :class:`.erasure.Erasure`
and :class:`.export.TenantExport`. :func:`.services.tenant_services` wires them once
for the Guard, which only delegates. Imports the layers below it: core, store, audit,
detect and enforce.
"""
