"""deltapipe: a PostgreSQL-native engine for incremental data pipelines."""

__version__ = "0.1.0"
