"""Paper presets: a published protocol run here, beside its published number.

``published`` (the numbers, as data), ``config`` (the ``paper:`` block and its grid),
``likelihood`` (the streamed -L_S), ``evaluate`` (one run's test metrics), ``result`` (the
typed contract of reports/paper/<name>.json), ``report`` (the intervals over seeds, the verdict
and the markdown); ``pipelines/paper.py`` runs and writes them.
"""
