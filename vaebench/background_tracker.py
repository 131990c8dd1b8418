"""The stages' tracker: ``MLflowTracker``'s calls on a worker thread, off the training loop.

Importing MLflow and talking to its store take seconds per stage; here they overlap the
stage's own work. ``benchmarks.scaling`` measures MLflow's time per logged metric
(``reports/benchmarks/scaling.md``).
"""

from __future__ import annotations

from pathlib import Path

from vaebench.tracking import (
    MLflowTracker,
    TrackingFailed,
    check_tracking_uri,
    default_tracking_uri,
    one_line_reason,
)


class BackgroundTracker:
    """A ``Tracker`` whose calls run in order on one worker thread, so that importing MLflow
    and talking to its store (seconds per stage) overlaps the stage's own work.

    The store is checked synchronously first (``check_tracking_uri``). A call that fails on the
    worker is raised by the next call of the stage or by ``end``, as a one-line
    ``TrackingFailed``: a store that goes away mid-run fails the stage at the next epoch.
    ``start`` does not wait either: the stage records the run id in ``on_run``, which runs on
    the worker once the run exists.
    """

    def __init__(self, experiment: str, root: Path, tracking_uri: str | None = None):
        import queue
        import threading

        uri = tracking_uri or default_tracking_uri(root)
        check_tracking_uri(uri, root)
        self.uri = uri
        self._calls: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self.failed = False  # a call failed: later calls, ``end`` included, are skipped
        self._tracker: MLflowTracker | None = None
        self._worker = threading.Thread(target=self._work, args=(experiment, root, uri),
                                        name="mlflow-tracker", daemon=True)
        self._worker.start()

    def _work(self, experiment: str, root: Path, uri: str) -> None:
        try:
            self._tracker = MLflowTracker(experiment, root, uri, checked=True)
        except BaseException as err:  # reported to the stage by its next call
            self._fail(err)
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, args, done = item
            try:
                if not self.failed:
                    done.append(fn(self._tracker, *args))
            except BaseException as err:
                self._fail(err)
            finally:
                self._calls.task_done()

    def _fail(self, err: BaseException) -> None:
        """Keep the first failure, as one line naming the store, for the stage's next call."""
        reason = one_line_reason(err)
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        failure = TrackingFailed(f"MLflow tracking store {self.uri} failed during the run "
                                 f"({type(err).__name__}: {reason})")
        failure.__cause__ = err
        self._error = failure
        self.failed = True

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _call(self, fn, *args, wait: bool = False):
        self._raise()
        done: list = []
        self._calls.put((fn, args, done))
        if wait:
            self._calls.join()
            self._raise()
            return done[0] if done else None
        return None

    def start(self, run_name, params, tags, resume_id=None, on_run=None) -> None:
        self._call(MLflowTracker.start, run_name, params, tags, resume_id, on_run)

    def log_metrics(self, metrics, step=None) -> None:
        self._call(MLflowTracker.log_metrics, dict(metrics), step)

    def log_datasets(self, splits) -> None:
        self._call(MLflowTracker.log_datasets, list(splits))

    def log_artifact(self, path, artifact_path=None) -> None:
        self._call(MLflowTracker.log_artifact, path, artifact_path)

    def end(self, status="FINISHED", seconds=None) -> None:
        """Close the run and wait for every call; the first failure not yet raised is raised
        here. After a failure the store is not called again (a dead store would only fail
        once more, after its retries)."""
        try:
            if self.failed:
                self._raise()
            else:
                self._call(MLflowTracker.end, status, seconds, wait=True)
        finally:
            self._calls.put(None)
            self._worker.join(timeout=60)
