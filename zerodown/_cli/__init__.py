"""The ``zerodown`` command: tooling a person runs from a shell; the runtime never imports it."""
