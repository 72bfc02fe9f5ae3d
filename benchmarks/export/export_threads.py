"""``han-export`` held to HAN_THREADS (default 2) ONNX Runtime and torch threads, so several exports can run
side by side on a many-core machine without oversubscribing it (the runs in results/sensitivity_fix_synth200.md).

    HAN_THREADS=2 python benchmarks/export/export_threads.py --checkpoint CKPT --calib-data DIR ...
"""

import os
import sys

import onnxruntime as ort
import torch

from han_deploy.export.cli import main

THREADS = int(os.environ.get("HAN_THREADS", "2"))


class _HeldOptions(ort.SessionOptions):
    """Sessions built with options (the export's own, the quantizer's) get THREADS threads and no spinning."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.intra_op_num_threads = THREADS
        self.inter_op_num_threads = 1
        self.add_session_config_entry("session.intra_op.allow_spinning", "0")


if __name__ == "__main__":
    torch.set_num_threads(THREADS)
    ort.SessionOptions = _HeldOptions
    sys.exit(main(sys.argv[1:]))
