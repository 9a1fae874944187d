"""tuneforge: shared library for the pipeline stages."""
