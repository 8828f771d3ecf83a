"""INT8 / FP16 / FP32 model preparation: calibration, Q/DQ quantization with an accuracy guard,
fidelity report, TensorRT engine building. Entry point: :func:`streamd.quantize.cli.main`."""
