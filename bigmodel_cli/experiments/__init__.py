"""Experiments: many runs at once, and what they tell you.

This package owns `bigmodel tune`, a hyperparameter search built on Optuna (`search`
runs the study, `space` turns `tune.space` into dimensions checked against the schema,
`trial` trains one trial as an ordinary run directory, `report` writes tune.json and
best.yaml, `tune_dir` names the files of a tune directory), and the commands that read
run directories after the fact: `runs` (list them with their status), `compare`
(configs and metrics side by side) and `plot` (learning curves and confusion matrices,
with matplotlib).

It sits just below the CLI: it may import training, evaluation, config, run_dir and
console; nothing but `cli.py` imports it. Optuna, matplotlib and TensorFlow are
imported inside the functions that need them, so `runs` and `compare` never load
TensorFlow and `bigmodel --help` loads none of them.
"""
