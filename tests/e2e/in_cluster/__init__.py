"""A package, so that its conftest's package-scoped install is removed before the rest of
the suite runs (without this file pytest keeps it to the end of the session)."""
