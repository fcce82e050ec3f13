"""qwc-service: a self-hostable server for the QuickBooks Web Connector."""

from . import _spyne_compat  # noqa: F401  (lets spyne import on Python 3.12+; cheap, no spyne import)

__version__ = "0.1.0"

__all__ = ["QueueClient", "JobInfo", "NewJob", "__version__"]


def __getattr__(name: str) -> object:
    # The client pulls in SQLAlchemy; load it only when someone asks for it.
    if name in ("QueueClient", "JobInfo", "NewJob"):
        from . import client

        return getattr(client, name)
    raise AttributeError(name)
