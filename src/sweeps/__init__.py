"""Optuna sweeps over a config: `train.py sweep` and `train.py compare_schedules`.

space                the search space: config keys and what to try for each
sampling             samplers and pruners by name
study_storage        the database a study lives in, shared by every worker; the study itself
fit_config           what a sweep reads from the `fit` config before any trial
objective            one trial: a `fit` per seed, reported to Optuna, pruned, failures recorded
report               trials.csv and trials.md, best.yaml, Optuna's plots
options              the `--sweep.*` flags
command              `train.py sweep`
schedule_comparison  `train.py compare_schedules`: a grid over the LR schedule, without pruning
experimental         Optuna features used on purpose that Optuna marks experimental
"""
