"""Prometheus metrics (definitions.py, the only module that defines them) and the HTTP endpoint."""
