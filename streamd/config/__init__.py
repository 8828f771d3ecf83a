"""Configuration: one TOML file, validated up front (schema.py), loaded by load.py."""

from streamd.config.load import load_config, parse_config
from streamd.config.schema import (
    Config,
    DaemonConfig,
    MetricsConfig,
    ModelConfig,
    PublishConfig,
    SourceConfig,
)

__all__ = ["Config", "DaemonConfig", "MetricsConfig", "ModelConfig", "PublishConfig",
           "SourceConfig", "load_config", "parse_config"]
