"""Template of the Triton python-backend model (copied into generated repositories; runs only inside Triton)."""
