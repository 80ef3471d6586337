"""Server integrations: gunicorn's hooks and zerodown's uvicorn worker for gunicorn."""
