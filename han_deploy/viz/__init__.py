"""Pictures of what a HAN does: attention maps (``attention``, ``regions``), ranked lists (``ranking``),
the demo report (``report``), shared OpenCV drawing helpers (``draw``) and the ``han-viz`` command (``cli``)."""
