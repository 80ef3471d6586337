"""Release N+1: an indexed ISBN, and ``title`` renamed to ``heading`` in one step."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("library", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="book",
            name="isbn",
            field=models.CharField(max_length=13, db_index=True, default=""),
            preserve_default=False,
        ),
        migrations.RenameField(model_name="book", old_name="title", new_name="heading"),
    ]
