"""The report: from the runs of a study to its tables, verdicts, figures and page.

- ``runs``: read every run back through the typed contract (``RunData``, ``read_runs``);
- ``aggregate``: each cell over its seeds (mean, Student-t interval, within-run error);
- ``compare``: paired comparisons on the same test points, Holm-corrected verdicts;
- ``build``: the ``Report`` (checks judged, headline, conventions) — logic, no files;
- ``tables``, ``figures``, ``page``: the presentation (Jinja2 template and CSS in templates/;
  published numbers from ``vaebench.paper.published``, paper-preset runs from reports/paper/).
"""

from vaebench.report.build import Report, build_report, failure_line, headline_metrics
from vaebench.report.runs import PICTURES, RunData, cell_label, read_runs

__all__ = ["PICTURES", "Report", "RunData", "build_report", "cell_label", "failure_line",
           "headline_metrics", "read_runs"]
