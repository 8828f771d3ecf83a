"""One service, several processes: a supervisor assigns the sources to worker processes (each runs the
single-process pipeline on its share), forwards their messages to the one public endpoint, merges
their metrics, health and preview, and restarts a worker that dies."""
