"""qwc-service: a self-hostable server for the QuickBooks Web Connector."""

from . import _spyne_compat  # noqa: F401  (lets spyne import on Python 3.12+; cheap, no spyne import)

__version__ = "0.1.0"
