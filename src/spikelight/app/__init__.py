"""The application: the Hydra command line (``train.py`` / ``eval.py``), preflight and config
checks, run folders, checkpoint resolution, distributed launch, trust of ``_target_`` s,
console output, the sweep report and the plot command."""
