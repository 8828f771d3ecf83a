"""The GPU path: letterbox and YOLOX-decode kernels, GpuDetector with its frames in flight.

Everything here reaches CUDA only through ``streamd.cuda``; importing the package needs no GPU.
"""
