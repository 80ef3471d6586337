"""zerodown for Django: add ``"zerodown.django"`` to ``INSTALLED_APPS``.

- Health checks from Django's own connections (:mod:`zerodown.django.health`): each of
  ``DATABASES`` and ``CACHES``, and the migrations applied, registered when the app loads.
- System checks (``manage.py check``) for what breaks a rotation: sessions kept in each
  process's memory or on its local disk, and a shutdown sequence that does not fit the
  grace period.

``settings.ZERODOWN = {"checks": False}`` registers no health check (the system checks
still run).
"""
