"""The root settings object and how it is loaded: defaults < TOML file < environment < CLI."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hartonomous.config.sections import (
    BackupSettings,
    BillingSettings,
    CdcSettings,
    DatabaseSettings,
    HealthSettings,
    InferenceSettings,
    LoggingSettings,
    MessageBrokerSettings,
    Neo4jSettings,
    SecuritySettings,
    ServerSettings,
    TelemetrySettings,
)
from hartonomous.errors import UsageError

ENV_PREFIX = "HARTONOMOUS_"
ENV_NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = "HARTONOMOUS_CONFIG"
DEFAULT_CONFIG_FILE = Path("hartonomous.toml")
# Environment variables with our prefix that are not settings keys.
_NON_SETTING_ENV = {CONFIG_FILE_ENV}


class ConfigError(UsageError):
    """Configuration that cannot be used; the message names the key or file."""


class Settings(BaseSettings):
    """Effective configuration of one Hartonomous process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default=Path(".hartonomous"))
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    message_broker: MessageBrokerSettings = Field(default_factory=MessageBrokerSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    cdc: CdcSettings = Field(default_factory=CdcSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = _FILE_VALUES.get(settings_cls)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if file_values is not None:
            sources.append(_MappingSource(settings_cls, file_values))
        return tuple(sources)


class _MappingSource(PydanticBaseSettingsSource):
    """Values already parsed from the TOML file (parsed by us so errors can name file and line)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


# The file values for the load in progress; pydantic-settings builds sources from the class.
_FILE_VALUES: dict[type[BaseSettings], dict[str, Any]] = {}


def resolve_config_file(explicit: Path | None) -> Path | None:
    """The file to read: `--config`, else $HARTONOMOUS_CONFIG, else ./hartonomous.toml if any."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_FILE_ENV)
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line L, column C)" in its message.
        raise ConfigError(f"config file {path}: malformed TOML: {exc}") from None


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load settings; raise ConfigError whose message names each bad key and its source."""
    path = resolve_config_file(config_file)
    file_values = read_toml(path) if path is not None else {}
    _check_environment()
    _FILE_VALUES[Settings] = file_values
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(error, path) for error in exc.errors())) from None
    finally:
        _FILE_VALUES.pop(Settings, None)


def _describe(error: Mapping[str, Any], path: Path | None) -> str:
    location = tuple(str(part) for part in error["loc"])
    key = ".".join(location)
    origin = _origin(location, path)
    if error["type"] == "extra_forbidden":
        hint = _close_match(location)
        return f"unknown configuration key '{key}'{origin}{hint}"
    given = error.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"invalid value for '{key}'{origin}: {message}{shown}"


def _origin(location: tuple[str, ...], path: Path | None) -> str:
    env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(location).upper()
    for depth in range(len(location), 0, -1):
        candidate = ENV_PREFIX + ENV_NESTED_DELIMITER.join(location[:depth]).upper()
        if candidate in os.environ:
            return f" from environment variable {candidate}"
    # A whole section's check (one value against another): the variables setting its keys.
    under = ENV_PREFIX + ENV_NESTED_DELIMITER.join(location).upper() + ENV_NESTED_DELIMITER
    variables = sorted(name for name in os.environ if name.startswith(under))
    if variables:
        plural = "s" if len(variables) > 1 else ""
        return f" from environment variable{plural} {', '.join(variables)}"
    if path is not None:
        return f" in {path}"
    return "" if env_name not in os.environ else f" from environment variable {env_name}"


def _close_match(location: tuple[str, ...]) -> str:
    model: type[BaseModel] | None = Settings
    for part in location[:-1]:
        field = model.model_fields.get(part) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    if model is None:
        return ""
    matches = difflib.get_close_matches(location[-1], list(model.model_fields), n=1)
    if not matches:
        return ""
    suggestion = ".".join((*location[:-1], matches[0]))
    return f" (did you mean '{suggestion}'?)"


def _known_env_names() -> Iterator[str]:
    def walk(model: type[BaseModel], prefix: str) -> Iterator[str]:
        for name, field in model.model_fields.items():
            env_name = f"{prefix}{name.upper()}"
            yield env_name
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from walk(annotation, env_name + ENV_NESTED_DELIMITER)

    yield from walk(Settings, ENV_PREFIX)


def _check_environment() -> None:
    """Refuse HARTONOMOUS_* variables that match no key: a typo must not be silently ignored."""
    known = set(_known_env_names()) | _NON_SETTING_ENV
    for name in sorted(os.environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            matches = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {matches[0]}?)" if matches else ""
            raise ConfigError(f"unknown configuration environment variable {name}{hint}")
