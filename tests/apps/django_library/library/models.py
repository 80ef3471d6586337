from __future__ import annotations

from django.db import models


class Book(models.Model):
    heading = models.CharField(max_length=200)
    isbn = models.CharField(max_length=13, db_index=True)
