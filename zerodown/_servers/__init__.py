"""Server integrations: gunicorn's hooks, zerodown's uvicorn worker for gunicorn, and the
mark that tells the workers of a pre-fork server of a preStop call."""
