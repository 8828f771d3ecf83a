"""Multi-object tracking: a ByteTrack-class tracker per source, giving detections a stable identity."""
