"""Multi-turn text-to-SQL on real SQLite databases for skyrl."""

__version__ = "0.1.0"
