"""A third-party reconad plugin (tests only)."""
