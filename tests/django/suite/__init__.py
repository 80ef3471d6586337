"""Django's own session backend tests (``tests/sessions_tests`` of Django's source
distribution), run against zerodown's engine as Django runs them against its own."""
