"""Triton python-backend model: HAN embeddings through ``han_deploy.runtime`` (ONNX Runtime inside).

``han_deploy.serve.triton.write_triton_repository`` copies this file to ``MODEL/1/model.py``, next
to ``model.onnx`` (except for the preprocess model). It runs in Triton's python stub, a separate
process whose ``sys.path`` is not the client's, so before importing ``han_deploy`` it puts the config
parameter ``sys_path`` (os.pathsep separated; written by the generator as the folders holding
``han_deploy`` and its site-packages) in front of ``sys.path``. Set that parameter to ``""`` where
han_deploy is pip-installed in Triton's own Python (e.g. in a container). Other parameters:
``model_file`` (relative to the version folder),
``device``, ``threads`` (ONNX Runtime intra-op threads, 0 = default), ``spinning`` (ONNX Runtime's
allow_spinning: ``0``, ``1`` or ``""`` for its default), ``input_kind`` (``tensor``: ``images``
float32 [3, H, W] per item; ``encoded``: ``encoded`` bytes per item, plus a ``valid`` output;
``preprocess``: ``encoded`` in, the network input ``images`` and ``valid`` out, no model: the first
step of an ensemble whose second step is any tensor model).
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameters(model_config):
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


def _extend_sys_path(entries):
    for entry in reversed([e for e in entries.split(os.pathsep) if e]):
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.insert(0, entry)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = _parameters(config)
        _extend_sys_path(params.get("sys_path", ""))
        try:
            from han_deploy.serve.handler import BatchHandler
        except ImportError as exc:
            raise RuntimeError(
                f"cannot import han_deploy in Triton's python stub ({exc}); set the model's 'sys_path' parameter to the "
                f"folders holding han_deploy and onnxruntime for Python {sys.version_info.major}.{sys.version_info.minor} "
                f"(now sys.path = {sys.path})"
            ) from exc
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        threads = int(params.get("threads", "0") or 0)
        options = {"threads": threads} if threads > 0 else {}
        if params.get("spinning", "") in ("0", "1"):  # ONNX Runtime's allow_spinning; "" keeps its default
            options["spinning"] = params["spinning"] == "1"
        self.kind = params.get("input_kind", "tensor")
        model_file = params.get("model_file", "")
        self.handler = BatchHandler(
            os.path.join(version_dir, model_file) if model_file else None,
            input_kind=self.kind,
            device=params.get("device", "cpu"),
            contract=params.get("han_deploy.contract"),
            **options,
        )
        self.output_name = "images" if self.kind == "preprocess" else "embeddings"
        declared = [o for o in config["output"] if o["name"] == self.output_name]
        expected = list(self.handler.item_shape) if self.kind == "preprocess" else [self.handler.dim]
        if not declared or [int(d) for d in declared[0]["dims"]] != expected:
            raise RuntimeError(f"config output {self.output_name!r} dims {declared and declared[0]['dims']} != {expected}")
        self.input_name = "images" if self.kind == "tensor" else "encoded"

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            results = self.handler.run(inputs)
        except Exception as exc:  # the runtime failed on the whole batch: every request gets the error
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))) for _ in requests]
        responses = []
        for result in results:
            if result.error is not None:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(result.error)))
                continue
            value = result.images if self.kind == "preprocess" else result.embeddings
            outputs = [pb_utils.Tensor(self.output_name, np.ascontiguousarray(value))]
            if self.kind != "tensor":
                outputs.append(pb_utils.Tensor("valid", np.ascontiguousarray(result.valid)))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self):
        self.handler.close()
