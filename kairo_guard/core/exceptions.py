"""Every error kairo-guard raises, under one root.

    KairoGuardError
    ├── ConfigError          bad configuration or arguments (also a ValueError)
    │   └── PolicyError      a rule that would break an invariant, rejected at load time
    ├── KeyringError         no key, an unreadable key file, an unknown key id
    ├── SealError            a seal that is malformed, forged or signed by an unknown key
    ├── ContentError         content that has no canonical encoding (cannot be digested)
    ├── StoreError           the state store failed or holds something unexpected
    ├── AuthenticationError  a request's tenant credentials are missing, bad or conflicting
    │   └── TokenRejected    a baggage token that proves no tenant (``reason`` says why)
    ├── AuditError           the audit log cannot be written
    │   └── AuditIntegrityError  the audit log or its signed head does not verify
    ├── ContentRefused       content cannot be vouched for (e.g. it is a tenant's text)
    │   └── IndexLagging     the fingerprint index is behind ingestion past its bound
    ├── DatasetError         a dataset or manifest does not verify, or is refused (``rule``)
    ├── RegistryError        a model registration was refused (``rule``)
    └── IsolationViolation   a sink in enforce mode refused records; carries the report

Third-party errors are translated with ``raise X(...) from exc`` so callers need to
catch only ``KairoGuardError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kairo_guard.core.report import CheckReport


class KairoGuardError(Exception):
    """Root of every error raised by kairo-guard."""


class ConfigError(KairoGuardError, ValueError):
    """Configuration or arguments are invalid; the message says what to change."""


class PolicyError(ConfigError):
    """A policy rule is invalid or would allow what the invariants forbid."""

    def __init__(self, message: str, *, rule_id: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id


class KeyringError(KairoGuardError):
    """No usable secret key: missing, unreadable, malformed or unknown key id."""


class SealError(KairoGuardError):
    """A seal could not be opened. ``code`` says why, for rule ids and metrics."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class ContentError(KairoGuardError):
    """Content has no canonical encoding, so it cannot be digested or sealed."""


class StoreError(KairoGuardError):
    """The state store failed; guard decisions that need it fail closed."""


class AuthenticationError(KairoGuardError):
    """A request's tenant credentials are missing, malformed, invalid or conflicting."""


class TokenRejected(AuthenticationError):
    """A baggage token that does not prove a tenant; ``reason`` says why (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"kairo baggage rejected: {reason}")
        self.reason = reason


class AuditError(KairoGuardError):
    """The audit log cannot be written; decisions that cannot be recorded block."""


class AuditIntegrityError(AuditError):
    """The audit log or its signed head failed verification."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class ContentRefused(KairoGuardError):
    """Content was refused a permitting label; ``rule`` and ``reason`` say why."""

    def __init__(self, rule: str, reason: str, *, tenant: str | None = None) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason
        self.tenant = tenant


class IndexLagging(ContentRefused):
    """The fingerprint index has not caught up with ingestion within its bound (rule
    ``index.lagging``): nothing can be vouched for or let into a shared sink until it
    does, since the net cannot see what it has not indexed."""

    RULE = "index.lagging"

    def __init__(self, reason: str) -> None:
        super().__init__(self.RULE, reason)


class DatasetError(KairoGuardError):
    """A dataset or its manifest is unreadable, does not verify, or is refused.

    ``rule`` names the check that failed (``dataset.manifest-invalid``,
    ``dataset.records-mismatch``, ...), as rules do in reports.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.reason = message


class RegistryError(KairoGuardError):
    """A model registration was refused; ``rule`` says which rule refused it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


class IsolationViolation(KairoGuardError):
    """A sink in ``enforce`` mode refused at least one record.

    The attached :class:`~kairo_guard.core.report.CheckReport` names every refused record's
    position, rule and reason (never its content).
    """

    def __init__(self, report: CheckReport) -> None:
        first = report.violations[0] if report.violations else None
        detail = f"; first: record {first.index} ({first.rule}: {first.reason})" if first else ""
        super().__init__(
            f"sink {report.sink!r} ({report.kind}) refused {report.blocked} of "
            f"{report.total} records{detail}"
        )
        self.report = report

    def __reduce__(self) -> tuple[type[IsolationViolation], tuple[CheckReport]]:
        # with its report, across processes (a worker's refusal reaches its parent whole)
        return type(self), (self.report,)
