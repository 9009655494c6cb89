"""The code that runs inside every worker and container (``python -m serverless_score.runner``)."""
