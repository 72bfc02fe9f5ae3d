"""Bench stage: FLOPs against the paper's budgets; latency and throughput per backend."""
