"""The package version, kept in one place so that pyproject.toml and the CLI agree."""

__version__ = "0.1.0"
