"""``zerodown rehearse``: a deploy of the user's app, under load, behind a real data plane."""
