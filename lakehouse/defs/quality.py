"""Contracts, drift, volume, quarantine share, referential integrity and SCD2 checks for Bronze and Silver."""

from lakehouse.lib.quality import quality_checks

QUALITY_CHECKS = quality_checks()
