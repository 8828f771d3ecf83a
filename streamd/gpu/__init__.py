"""The GPU path: letterbox and YOLOX-decode kernels, the double-buffered pipeline, GpuDetector.

Everything here reaches CUDA only through ``streamd.cuda``; importing the package needs no GPU.
"""
