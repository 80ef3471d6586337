"""``zerodown migrations``: the linter for migrations, before they reach a rehearsal."""
