"""
The ingress: Bandwidth messaging callbacks in, one Kafka record per item out.

``create_app`` builds the aiohttp application, ``serve`` runs it on a port
until told to stop, and ``Ingress`` is the Kafka side they share.
"""

from ingest.app import CALLBACK_PATH, create_app
from ingest.publish import Ingress
from ingest.server import IngressServer, serve

__all__ = ["CALLBACK_PATH", "Ingress", "IngressServer", "create_app", "serve"]
