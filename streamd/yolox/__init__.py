"""Pre- and post-processing around the network: letterbox in, YOLOX decode + NMS out."""
