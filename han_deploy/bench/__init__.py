"""Bench stage: FLOPs against the paper's budgets, and latency / throughput / memory per backend, precision and batch.

``flops`` (FLOPs and params vs budget), ``timing`` (warm-up, repeats, percentiles, noise flags), ``memory``
(peak RSS / CUDA peak), ``runners`` (PyTorch eager / compiled, the runtime's backends), ``cases`` and
``measure`` (what to time, timed interleaved), ``peak`` (the machine's GEMM peak), ``report`` / ``suite_report``
(tables, JSON, plots), ``profiling`` (time per operator), ``machine`` (CPU, flags, versions, load). Entry point:
``han-bench``. The ResNet50 / MobileNetV2 re-id comparators are registered models (``create_model("resnet50")``).
"""
