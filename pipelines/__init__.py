"""End-to-end jobs (recipes) that compose the genomics_bigbird library; `gbb` is pipelines.cli."""
