"""The torch-free data contract beside ``config.py``: image decoding and preprocessing, numpy and OpenCV only.

Training, calibration, parity, evaluation baselines, viz and the runtime all decode and preprocess
with these modules, so a model is trained on exactly the pixels deployment feeds it (docs/runtime.md).
"""
