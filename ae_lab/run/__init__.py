"""One job: its settings checked, its parts built (data, model, trainer), fitted, evaluated, its
``metrics.json`` and checkpoints written, and the guards that keep it honest (divergence, random
state, a graceful stop on a signal). Importing this package loads nothing heavy: ``eval.py``
reads its command line through :mod:`ae_lab.run.eval_config` before torch is imported."""
