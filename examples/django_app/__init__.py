"""A Django project wrapped by zerodown: ``asgi.py`` and ``wsgi.py`` are its entry points.

Run ``uvicorn examples.django_app.asgi:application --timeout-keep-alive 75``, or
``gunicorn -c examples/gunicorn.conf.py -k gthread examples.django_app.wsgi:application``.
"""
