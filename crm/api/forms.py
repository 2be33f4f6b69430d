"""Forms of this area."""
