"""Records: the version-skew-safe codec and the schema lock behind ``zerodown schema``."""
