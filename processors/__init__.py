"""The three consumer-group processors: inbound, delivery and mms."""

from processors.handlers import DeliveryHandler, InboundHandler, MmsHandler
from processors.runner import Processor

__all__ = ["DeliveryHandler", "InboundHandler", "MmsHandler", "Processor"]
