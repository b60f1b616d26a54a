"""genomics-bigbird: long-context DNA language models (BigBird, Combiner) and their pipelines."""

__version__ = "0.1.0"
