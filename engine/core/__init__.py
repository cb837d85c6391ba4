"""The core every room shares: errors, the event schema, the typed records, the run spec, settings."""
