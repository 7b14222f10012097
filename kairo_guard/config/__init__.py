"""Configuration: explicit arguments > environment (``KAIRO_GUARD_*``) > an optional
``kairo-guard.toml`` > defaults.

The file may hold ``[guard]`` (home, default_mode), ``[sinks.NAME]``, ``[[rules]]``,
``[retention]`` and ``[limits]``. :func:`check_config_file` reports every problem of a
file at once, each with where it is and what to do.

Which file is read (:func:`find_config_file`; one file, never a merge of several):

1. the ``config_file`` argument (the CLI's ``--config``);
2. ``KAIRO_GUARD_CONFIG``;
3. ``./kairo-guard.toml``, in the current directory;
4. ``kairo-guard.toml`` in the state directory: the ``home`` argument (the CLI's
   ``--home``), else ``KAIRO_GUARD_HOME``, else ``./.kairo-guard``.

A file named for the run (1, 2) is the most deliberate choice; one beside the project
(3) is more specific than the one kept with the state (4), which several projects may
share. The first place that names a file (1, 2) or holds one (3, 4) wins. A file named
or found there that cannot be read, is not TOML, or is invalid is an error
(:class:`~kairo_guard.core.exceptions.ConfigError`, exit 2 in the CLI); the search never
falls through to the next place, since that would run on other rules than the user's.

The file may itself set the state directory (``[guard] home``). The directory searched
in place 4 never comes from a file: one search, one file, no loop. The state directory
is the ``home`` argument > ``KAIRO_GUARD_HOME`` > the file's ``[guard] home`` >
``./.kairo-guard``. A file found in the state directory (place 4) must not move it: a
``[guard] home`` there that names another directory is an error, because a guard on
another state directory would check sinks against another fingerprint index.
"""

from kairo_guard.config.schema import (
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_VIOLATIONS,
    ConfigFile,
    FingerprintSection,
    GuardSection,
    LimitsSection,
    PiiSection,
    PropagationSection,
    RuleSection,
    SinkSection,
    TelemetrySection,
    check_config_file,
    parse_duration,
)
from kairo_guard.config.settings import (
    CONFIG_FILE_NAME,
    DEFAULT_CONFIG_FILE,
    DEFAULT_HOME,
    ENV_CONFIG,
    ENV_DB_URL,
    ENV_HOME,
    ENV_MODE,
    Settings,
    find_config_file,
    load_settings,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_HOME",
    "DEFAULT_MAX_RECORD_BYTES",
    "DEFAULT_MAX_VIOLATIONS",
    "ENV_CONFIG",
    "ENV_DB_URL",
    "ENV_HOME",
    "ENV_MODE",
    "ConfigFile",
    "FingerprintSection",
    "GuardSection",
    "LimitsSection",
    "PiiSection",
    "PropagationSection",
    "RuleSection",
    "Settings",
    "SinkSection",
    "TelemetrySection",
    "check_config_file",
    "find_config_file",
    "load_settings",
    "parse_duration",
]
