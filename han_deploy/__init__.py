"""han-deploy: a deployment-grade person re-identification feature extractor built on HAN.

The package is laid out one sub-package per stage so the data flow reads top to bottom:
``model`` -> ``data`` -> ``train`` -> ``evaluate`` -> ``export`` -> ``runtime`` -> ``bench`` -> ``viz``.
Importing this top-level package pulls in nothing heavy: ``runtime`` and ``evaluate`` stay torch-free.
"""

__version__ = "0.1.0"
