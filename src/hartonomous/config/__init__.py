"""Typed settings from a TOML file and the environment (docs/configuration.md)."""

from hartonomous.config.settings import ConfigError, Settings, load_settings, resolve_config_file
from hartonomous.config.show import effective_settings, masked_url

__all__ = [
    "ConfigError",
    "Settings",
    "effective_settings",
    "load_settings",
    "masked_url",
    "resolve_config_file",
]
