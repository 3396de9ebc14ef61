"""The names of the files a run leaves in its directory, each defined once: the run, the sweep
summary and ``eval.py`` all read them from here.

    RUN/metrics.json                 final val/test metrics (a finished run)
    RUN/failure.json                 how a job that did not finish ended
    RUN/report/reconstructions.png   the strip the sweep report shows for the job
"""

from pathlib import Path

METRICS_FILE = "metrics.json"
FAILURE_FILE = "failure.json"
STRIP = Path("report") / "reconstructions.png"
