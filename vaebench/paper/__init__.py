"""Paper presets: a published protocol run here, beside its published number.

``published`` (the numbers, as data), ``config`` (the ``paper:`` block and its grid),
``likelihood`` (the streamed -L_S), ``evaluate`` (one run's test metrics), ``report`` (the
intervals over seeds and the verdict); ``pipelines/paper.py`` runs and writes them.
"""
