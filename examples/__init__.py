"""Example apps wrapped by zerodown; importable as ``examples.starlette_app:app`` etc."""
