"""Asset checks for Bronze and Silver, built from the contracts (see quality.py)."""
