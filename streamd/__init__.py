"""streamd: a streaming video-analytics daemon (capture -> inference -> decode -> publish)."""

__version__ = "0.1.0"
