"""circle-ws-web: self-managing, authenticated JSON-RPC WebSocket clients (browser and CPython)."""

__version__ = "0.1.0"
