"""zerodown for Django: add ``"zerodown.django"`` to ``INSTALLED_APPS``.

- Health checks from Django's own connections (:mod:`zerodown.django.health`): each of
  ``DATABASES`` and ``CACHES``, and the migrations applied, registered when the app loads.
- A session engine on zerodown's store (:mod:`zerodown.django.sessions`):
  ``SESSION_ENGINE = "zerodown.django.sessions"`` with its ``SessionMiddleware``; values in
  JSON, only changed keys written, a logout never undone, and a release that reads the
  previous engine's sessions while the rollout switches engines.
- System checks (``manage.py check``) for what breaks a rotation: sessions kept in each
  process's memory or on its local disk, a session engine misconfigured, and a shutdown
  sequence that does not fit the grace period.
- zerodown's settings among Django's, in ``settings.ZERODOWN`` (:mod:`zerodown.django.conf`);
  ``{"checks": False}`` there registers no health check (the system checks still run).
"""
