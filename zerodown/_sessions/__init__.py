"""Sessions: the session, the sans-IO save policy, the stores, and the ASGI and WSGI middleware."""
