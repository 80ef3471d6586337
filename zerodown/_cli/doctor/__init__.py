"""``zerodown doctor``: a static check of what decides whether a rotation loses requests."""
