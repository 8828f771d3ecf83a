"""Configuration: one TOML file, validated up front. schema.py is the single source of truth (every
key's default, meaning and allowed values), load.py validates a file against it, reference.py renders
the configuration reference (docs/configuration.md) from it."""

from streamd.config.load import load_config, parse_config

__all__ = ["load_config", "parse_config"]
