"""Named sinks: where records are headed, and what happens to refused ones."""

from __future__ import annotations

from dataclasses import dataclass

from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.types import TENANT_PATTERN, Mode, SinkKind, TenantId

MAX_SINK_NAME = 128


@dataclass(frozen=True, slots=True)
class Sink:
    """A named destination. ``tenant`` is set exactly for ``tenant-fine-tune`` sinks."""

    name: str
    kind: SinkKind
    tenant: TenantId | None = None
    mode: Mode = Mode.ENFORCE

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > MAX_SINK_NAME or not self.name.isprintable():
            raise ConfigError(f"sink name must be 1-{MAX_SINK_NAME} printable characters")
        if self.kind is SinkKind.TENANT_FINE_TUNE:
            if self.tenant is None or TENANT_PATTERN.fullmatch(self.tenant) is None:
                raise ConfigError(
                    f"sink {self.name!r}: a tenant-fine-tune sink needs a valid tenant "
                    "(kind='tenant-fine-tune', tenant='acme' or kind='tenant-fine-tune:acme')"
                )
        elif self.tenant is not None:
            raise ConfigError(f"sink {self.name!r}: a {self.kind} sink takes no tenant")

    @property
    def label(self) -> str:
        """The sink kind as written in config and reports (``tenant-fine-tune:acme``)."""
        return f"{self.kind}:{self.tenant}" if self.tenant else str(self.kind)


def parse_kind(kind: str | SinkKind, tenant: TenantId | None = None) -> tuple[SinkKind, str | None]:
    """Split ``tenant-fine-tune:acme`` into kind and tenant; unknown kinds are an error.

    Raises:
        ConfigError: for an unknown kind or two different tenants.
    """
    text = str(kind)
    base, sep, embedded = text.partition(":")
    try:
        parsed = SinkKind(base)
    except ValueError:
        known = ", ".join(k.value for k in SinkKind)
        raise ConfigError(f"unknown sink kind {text!r}; known kinds: {known}") from None
    if sep:
        if tenant is not None and tenant != embedded:
            raise ConfigError(f"sink kind {text!r} names tenant {embedded!r}, not {tenant!r}")
        tenant = embedded
    return parsed, tenant


def make_sink(
    name: str,
    kind: str | SinkKind,
    *,
    tenant: TenantId | None = None,
    mode: str | Mode = Mode.ENFORCE,
) -> Sink:
    """Return a validated :class:`Sink` from loosely typed parts.

    Raises:
        ConfigError: saying which part is wrong.
    """
    parsed, tenant = parse_kind(kind, tenant)
    try:
        parsed_mode = Mode(mode)
    except ValueError:
        raise ConfigError(
            f"unknown mode {mode!r}; use one of {', '.join(m.value for m in Mode)}"
        ) from None
    return Sink(name=name, kind=parsed, tenant=tenant, mode=parsed_mode)
