"""Detections out over ZeroMQ: message schema (message.py), publisher, subscriber helper."""
