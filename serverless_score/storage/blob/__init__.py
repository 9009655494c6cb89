"""Azure Blob Storage: the only package that imports the Azure Storage SDK (``azure.storage.blob``).

``store`` implements the Store protocol, ``clients`` turns URIs into SDK clients with the right
credential and signs SAS URLs, ``compose`` merges parts server-side, ``errors`` translates SDK
errors into the tool's own, naming the URI.
"""

from .store import BlobStore

__all__ = ["BlobStore"]
