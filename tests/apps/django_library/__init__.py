"""A small Django project whose migrations ``zerodown migrations check --django`` reads."""
