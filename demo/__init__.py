"""The end-to-end demo (``bitvelocity demo``), the smoke pipeline and the decoder example:
runs of the real pipeline against the stack with their checks, not part of the product path.
"""
