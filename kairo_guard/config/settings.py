"""Resolved settings: where each comes from, and which config file is read.

See :mod:`kairo_guard.config` for the precedence, and why.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from kairo_guard.config.schema import (
    ConfigFile,
    FingerprintSection,
    LimitsSection,
    PiiSection,
    PropagationSection,
    TelemetrySection,
    explain,
    parse_duration,
    read_config_toml,
    semantic_problems,
)
from kairo_guard.core.exceptions import ConfigError
from kairo_guard.core.policy import Rule
from kairo_guard.core.sinks import Sink
from kairo_guard.core.types import DataClass, Mode

ENV_HOME = "KAIRO_GUARD_HOME"
"""State directory (default ``./.kairo-guard``)."""
ENV_CONFIG = "KAIRO_GUARD_CONFIG"
"""Path of the TOML config file (default ``./kairo-guard.toml`` if it exists)."""
ENV_MODE = "KAIRO_GUARD_MODE"
"""Default sink mode: enforce, filter or observe."""
ENV_DB_URL = "KAIRO_GUARD_DB_URL"
"""State store URL; unset means SQLite in the state directory."""
ENV_AUDIT_LOG_ID = "KAIRO_GUARD_AUDIT_LOG_ID"
"""Name of the state directory's audit log in the store's anchors (default ``default``)."""

DEFAULT_HOME = Path(".kairo-guard")
CONFIG_FILE_NAME = "kairo-guard.toml"
"""Name of the config file in the current directory and in the state directory."""
DEFAULT_CONFIG_FILE = Path(CONFIG_FILE_NAME)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration, ready for :class:`~kairo_guard.guard.Guard`."""

    home: Path
    default_mode: Mode
    sinks: Mapping[str, Sink]
    sink_routes: Mapping[str, Sink]
    trusted_proxies: tuple[str, ...]
    tenant_header: str
    rules: tuple[Rule, ...]
    retention: Mapping[DataClass, int]
    limits: LimitsSection
    fingerprints: FingerprintSection
    telemetry: TelemetrySection
    pii: PiiSection
    db_url: str | None
    config_file: Path | None
    agent_run_retention: int = 90 * 86400
    """Retention of agent run logs in seconds (``[retention] agent_run``; the policy's 90d)."""
    propagation: PropagationSection = field(default_factory=PropagationSection)
    """Signed tenant baggage: trusted peers and token lifetime (``[propagation]``)."""
    audit_log_id: str = "default"
    """Names this state directory where the store keeps what is its own (its audit
    log's anchor, its index coverage): ``KAIRO_GUARD_AUDIT_LOG_ID``, else the name pinned
    in the directory, else a hash of the host name and the directory's path
    (:func:`state_directory_id`), so that state directories sharing one store never take
    each other's."""


def child_environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a helper process that opens its own guard on ``settings``'
    state directory (the spool's indexer and writer): ``base`` (default ``os.environ``)
    with the store and the state directory's name these settings resolved, however they
    were given (a ``Guard(env=...)`` or a changed environment would otherwise send the
    helper to another store, or under another replica name)."""
    env = dict(os.environ if base is None else base)
    env.pop(ENV_DB_URL, None)
    if settings.db_url:
        env[ENV_DB_URL] = settings.db_url
    env[ENV_AUDIT_LOG_ID] = settings.audit_log_id
    return env


STATE_ID_FILE = "state-id"
"""The file of a state directory that pins its name (:func:`state_directory_id`)."""
_STATE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def state_directory_id(home: Path) -> str:
    """A stable name for state directory ``home``: the name pinned in its
    :data:`STATE_ID_FILE` once a guard has opened it (the audit log's opening pins it,
    signed: :mod:`kairo_guard.audit_opening`), else ``sd-`` and 16 hex digits of SHA-256
    of the host name and the directory's absolute path. Pinned, the name survives a new
    host name (a container re-created around the same volume keeps its audit anchor and
    its index coverage row).

    Raises:
        ConfigError: the file is there but unreadable or does not hold a name.
    """
    pinned = read_state_pin(home)
    if pinned is not None:
        return pinned[0]
    where = f"{socket.gethostname()}\0{home.resolve()}".encode()
    return "sd-" + hashlib.sha256(where).hexdigest()[:16]


def read_state_pin(home: Path) -> tuple[str, str] | None:
    """The name pinned in ``home``'s :data:`STATE_ID_FILE` and its signature (None
    when there is no such file).

    Raises:
        ConfigError: the file is unreadable or malformed.
    """
    pinned = home / STATE_ID_FILE
    try:
        text = pinned.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the state directory's name from {pinned}: {exc}") from exc
    fields = text.split()
    if len(fields) != 2 or not _STATE_ID.fullmatch(fields[0]):
        raise ConfigError(f"{pinned} does not hold a state directory name: {text[:80]!r}")
    return fields[0], fields[1]


def find_config_file(
    *,
    config_file: Path | str | None = None,
    home: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Path | None:
    """Return the config file settings are read from, or None if there is none.

    In order: ``config_file``, ``KAIRO_GUARD_CONFIG``, ``./kairo-guard.toml``, then
    ``kairo-guard.toml`` in the state directory (``home``, else ``KAIRO_GUARD_HOME``,
    else ``./.kairo-guard``); see the module docstring for why.

    Args:
        config_file: an explicit file; returned as is (reading it reports if it is missing).
        home: an explicit state directory, searched in place of ``KAIRO_GUARD_HOME``.
        env: the environment (default ``os.environ``).

    Returns:
        The path named or found; a found path exists (it may still be unreadable).
    """
    return _locate_config(config_file, home, os.environ if env is None else env)[0]


def _state_dir(home: Path | str | None, env: Mapping[str, str]) -> Path:
    return Path(home or env.get(ENV_HOME) or DEFAULT_HOME)


def _locate_config(
    explicit: Path | str | None, home: Path | str | None, env: Mapping[str, str]
) -> tuple[Path | None, bool]:
    """Return the config file and whether it was found in the state directory."""
    if explicit is not None:
        return Path(explicit), False
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]), False
    # absolute: an error must say which of the two kairo-guard.toml it is about
    in_home = (_state_dir(home, env) / CONFIG_FILE_NAME).absolute()
    for candidate in (DEFAULT_CONFIG_FILE.absolute(), in_home):
        # a dangling link or a directory in the way is reported, not skipped
        if candidate.exists() or candidate.is_symlink():
            return candidate, candidate is in_home
    return None, False


def _resolve_home(
    home: Path | str | None, env: Mapping[str, str], doc: ConfigFile, found_in: Path | None
) -> Path:
    """The state directory; ``found_in`` is the one the config file was found in, if so."""
    if found_in is None:
        return Path(home or env.get(ENV_HOME) or doc.guard.home or DEFAULT_HOME)
    if doc.guard.home and Path(doc.guard.home).resolve() != found_in.resolve():
        raise ConfigError(
            f"{found_in / CONFIG_FILE_NAME}: [guard] home = {doc.guard.home!r} names another "
            f"state directory than the one this file is in ({found_in}); remove that line "
            f"or move the file"
        )
    return found_in


def load_settings(
    *,
    home: Path | str | None = None,
    config_file: Path | str | None = None,
    default_mode: Mode | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from arguments, environment, config file and defaults.

    Args:
        home: the state directory (else ``KAIRO_GUARD_HOME``, the file's, the default).
        config_file: the config file (else found as :func:`find_config_file` says).
        default_mode: the mode of sinks that set none (else ``KAIRO_GUARD_MODE``, ...).
        env: the environment (default ``os.environ``).

    Returns:
        The resolved :class:`Settings`.

    Raises:
        ConfigError: listing every problem found.
    """
    environ = os.environ if env is None else env
    path, in_home = _locate_config(config_file, home, environ)
    try:
        doc = ConfigFile.model_validate(read_config_toml(path)) if path else ConfigFile()
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(explain(exc))) from exc
    mode_text = default_mode or environ.get(ENV_MODE) or doc.guard.default_mode
    try:
        mode = Mode(mode_text)
    except ValueError:
        raise ConfigError(f"{ENV_MODE}={mode_text!r}: use enforce, filter or observe") from None
    problems, sinks, rules = semantic_problems(doc, mode)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    home_path = _resolve_home(home, environ, doc, _state_dir(home, environ) if in_home else None)
    return Settings(
        home=home_path,
        default_mode=mode,
        sinks=sinks,
        sink_routes={route: sinks[name] for name, sec in doc.sinks.items() for route in sec.routes},
        trusted_proxies=tuple(doc.guard.trusted_proxies),
        tenant_header=doc.guard.tenant_header,
        rules=tuple(rules),
        retention={
            cls: parse_duration(text)
            for cls, text in doc.retention.items()
            if isinstance(cls, DataClass)
        },
        agent_run_retention=parse_duration(doc.retention.get("agent_run", "90d")),
        limits=doc.limits,
        fingerprints=doc.fingerprints,
        telemetry=doc.telemetry,
        pii=doc.pii,
        propagation=doc.propagation,
        db_url=environ.get(ENV_DB_URL) or None,
        audit_log_id=environ.get(ENV_AUDIT_LOG_ID) or state_directory_id(home_path),
        config_file=path,
    )
