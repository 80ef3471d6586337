"""Health checks: the model, the runs (the executor), the registry and the built-in checks."""
