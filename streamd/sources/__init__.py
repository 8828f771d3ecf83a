"""Frame sources: one capture thread per source, feeding a latest-frame slot."""
