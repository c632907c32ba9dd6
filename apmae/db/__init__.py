"""The pattern atlas's SQL store: tables (``models``), engines, sessions and migrations
(``session``). SQLite under ``APMAE_HOME`` by default, PostgreSQL through ``APMAE_DATABASE_URL``."""
