"""The ``kairo-guard.toml`` schema: its sections, durations, and the check that explains
every problem of a file at once (:func:`check_config_file`)."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.policy import Policy, Rule, check_rule_safe, rule
from kairo_guard.core.sinks import Sink, make_sink
from kairo_guard.core.types import DataClass, Mode

DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_VIOLATIONS = 10_000
_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Return seconds for ``"90d"``, ``"12h"``, ``"30m"`` or ``"45s"``.

    Raises:
        ValueError: for anything else, or a zero duration.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like '90d', '12h', '30m' or '45s'")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip_networks(value: list[str]) -> list[str]:
    """Validate a list of addresses or networks (``10.0.0.0/8``, ``::1``)."""
    for text in value:
        ipaddress.ip_network(text, strict=False)
    return value


class GuardSection(_Strict):
    home: str | None = None
    default_mode: Mode = Mode.ENFORCE
    trusted_proxies: list[str] = Field(default_factory=list)
    tenant_header: str = Field(default="x-kairo-tenant", pattern=r"^[A-Za-z0-9-]{1,64}$")

    _networks = field_validator("trusted_proxies")(_ip_networks)


class SinkSection(_Strict):
    kind: str
    tenant: str | None = None
    mode: Mode | None = None
    routes: list[str] = Field(default_factory=list)

    @field_validator("routes")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"route {path!r} must be a path starting with '/'")
        return value


class RuleSection(_Strict):
    id: str
    effect: Literal["allow", "deny"]
    reason: str = Field(min_length=1)
    data_classes: list[DataClass] | None = None
    sink_kinds: list[str] | None = None
    tenant: Literal["any", "same", "other"] = "any"
    when: dict[str, bool] = Field(default_factory=dict)
    sources: list[str] | None = None
    priority: int = Field(default=100, ge=0, le=10_000)


class LimitsSection(_Strict):
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=1024, le=1 << 31)
    max_violations: int = Field(default=DEFAULT_MAX_VIOLATIONS, ge=0, le=10_000_000)
    audit_batch_size: int = Field(default=1024, ge=1, le=1_000_000)
    audit_flush_ms: int = Field(default=200, ge=1, le=60_000)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1, le=1 << 40)
    spool_max_bytes: int = Field(default=16 * 1024 * 1024 * 1024, ge=1, le=1 << 44)
    spool_min_free_bytes: int = Field(default=512 * 1024 * 1024, ge=0, le=1 << 44)
    index_wait_seconds: float = Field(default=30.0, ge=0, le=3600)
    shutdown_index_seconds: float = Field(default=10.0, ge=0, le=3600)


class FingerprintSection(_Strict):
    min_shared: int = Field(default=3, ge=1, le=1000)
    min_fraction: float = Field(default=0.5, gt=0, le=1)
    boilerplate_tenants: int = Field(default=5, ge=2, le=1_000_000)


class PiiSection(_Strict):
    enabled: bool = True
    entities: list[str] | None = None
    operator_entities: list[str] | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    allow_list: list[str] = Field(default_factory=list)
    model: str | None = None
    processes: int | None = Field(default=None, ge=1, le=64)


class TelemetrySection(_Strict):
    k: int = Field(default=10, ge=2, le=1_000_000)
    window: str = "1h"
    epsilon: float | None = Field(default=1.0, gt=0, le=100)
    dimensions: list[str] = Field(default_factory=lambda: ["route", "model"])
    enumerations: dict[str, list[str]] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"route", "model", "status", "error_type"}
        if unknown:
            raise ValueError(
                f"unknown dimensions {sorted(unknown)}; use route, model, status, error_type"
            )
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        known = {"tenant", "route", "model", "latency_ms", "status", "error_type", "ts"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; map {sorted(known)}")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_duration(value)
        return value


class PropagationSection(_Strict):
    """``[propagation]``: who may send signed tenant baggage, and how long it lives."""

    trusted_peers: list[str] = Field(default_factory=list)
    token_ttl: int = Field(default=300, ge=1, le=86_400)

    _networks = field_validator("trusted_peers")(_ip_networks)


class ConfigFile(_Strict):
    guard: GuardSection = Field(default_factory=GuardSection)
    sinks: dict[str, SinkSection] = Field(default_factory=dict)
    rules: list[RuleSection] = Field(default_factory=list)
    # keys: data classes, and "agent_run" for agent run logs (see kairo_guard.tenancy.retention)
    retention: dict[DataClass | Literal["agent_run"], str] = Field(default_factory=dict)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    fingerprints: FingerprintSection = Field(default_factory=FingerprintSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    pii: PiiSection = Field(default_factory=PiiSection)
    propagation: PropagationSection = Field(default_factory=PropagationSection)

    @field_validator("retention")
    @classmethod
    def _durations(cls, value: dict[DataClass | str, str]) -> dict[DataClass | str, str]:
        for text in value.values():
            parse_duration(text)
        return value


def read_config_toml(path: Path) -> dict[str, Any]:
    """Return the parsed TOML of ``path``.

    Raises:
        ConfigError: if it cannot be read or is not TOML.
    """
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def explain(exc: ValidationError) -> list[str]:
    """Return a schema error as one ``where: what`` line per problem."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return problems


def semantic_problems(
    doc: ConfigFile, default_mode: Mode
) -> tuple[list[str], dict[str, Sink], list[Rule]]:
    """Build the sinks and rules of a valid document; return the problems found too."""
    problems: list[str] = []
    sinks: dict[str, Sink] = {}
    rules: list[Rule] = []
    for name, section in doc.sinks.items():
        try:
            sinks[name] = make_sink(
                name, section.kind, tenant=section.tenant, mode=section.mode or default_mode
            )
        except ConfigError as exc:
            problems.append(f"sinks.{name}: {exc}")
    for i, rule_section in enumerate(doc.rules):
        try:
            built = rule(**rule_section.model_dump())
            check_rule_safe(built)
            rules.append(built)
        except ConfigError as exc:
            problems.append(f"rules.{i} ({rule_section.id}): {exc}")
    try:
        Policy(extra_rules=rules)  # what the guard builds: e.g. two rules sharing an id
    except ConfigError as exc:
        problems.append(f"rules: {exc}")
    return problems, sinks, rules


def check_config_file(path: Path) -> list[str]:
    """Return every problem of a config file, in plain words; empty means valid."""
    try:
        raw = read_config_toml(path)
    except ConfigError as exc:
        return [str(exc)]
    try:
        doc = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        # Schema errors elsewhere must not hide the sink and rule problems: check each
        # sink and rule that is well-formed on its own as well.
        return explain(exc) + _item_problems(raw)
    problems, _, _ = semantic_problems(doc, doc.guard.default_mode)
    return problems


def _item_problems(raw: dict[str, Any]) -> list[str]:
    sinks = raw.get("sinks") if isinstance(raw.get("sinks"), dict) else {}
    rules = raw.get("rules") if isinstance(raw.get("rules"), list) else []
    good_sinks = {}
    for name, section in (sinks or {}).items():
        try:
            good_sinks[name] = SinkSection.model_validate(section)
        except ValidationError:
            continue  # already explained by the schema errors
    good_rules: list[RuleSection | None] = []
    for section in rules or []:
        try:
            good_rules.append(RuleSection.model_validate(section))
        except ValidationError:
            good_rules.append(None)
    problems, _, _ = semantic_problems(
        ConfigFile.model_construct(sinks=good_sinks, rules=[]), Mode.ENFORCE
    )
    for i, rule_section in enumerate(good_rules):
        if rule_section is None:
            continue
        try:
            check_rule_safe(rule(**rule_section.model_dump()))
        except ConfigError as exc:
            problems.append(f"rules.{i} ({rule_section.id}): {exc}")
    return problems
