"""Operational scripts: load test and soak test against the app on localhost."""
