"""Kubernetes manifests of message-events and the tools that check them."""
