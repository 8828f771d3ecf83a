"""Analytics on tracked objects: zones, directed lines, dwell and occupancy, as events and metrics."""
