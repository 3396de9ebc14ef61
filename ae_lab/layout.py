"""The names of the files a run leaves in its directory, each defined once: the run, the sweep
summary and ``eval.py`` all read them from here.

    RUN/metrics.json                 final val/test metrics (a finished run)
    RUN/failure.json                 how a job that did not finish ended
    RUN/report/reconstructions.png   the strip the sweep report shows for the job
    RUN/report/samples.png           decoded samples, interpolation.png a walk between codes,
    RUN/report/codes.npz             2-D map of the test codes (for the sweep's report.md)
"""

from pathlib import Path

METRICS_FILE = "metrics.json"
FAILURE_FILE = "failure.json"
STRIP = Path("report") / "reconstructions.png"
SAMPLES = STRIP.parent / "samples.png"
INTERPOLATION = STRIP.parent / "interpolation.png"
CODE_MAP = STRIP.parent / "codes.npz"
