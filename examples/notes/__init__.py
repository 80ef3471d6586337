"""Notes: a small app as real ones are, to rehearse with its own traffic (docs/rehearse.md)."""
