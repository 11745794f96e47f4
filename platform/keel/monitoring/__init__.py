"""Monitoring: drift, quality and SLO checks of served versions against their training data."""
