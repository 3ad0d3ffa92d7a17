"""The chaos soak: a fault-injecting TCP proxy in front of real servers, and clients that must
come through it (docs/chaos.md). proxy.py: the proxy; rig.py: servers, proxies and the seeded
fault schedule; soak.py: the client side (also runs in Pyodide); analysis.py: the verdict."""
