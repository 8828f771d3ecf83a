"""The daemon's lifecycle: wiring (service.py), the pipeline thread, HTTP endpoints, sd_notify."""
