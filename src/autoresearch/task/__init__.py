"""A task: the researcher's training script(s), a fixed evaluator, data and a declaration (task.toml).

    declaration   Task: parse and validate task.toml (or [task] in autoresearch.toml); errors name the key and fix
    metric        Metric: the figure's name and its direction (better(a, b), loss(x))
    store         init --task: the workspace, the judge's copy (fixed + hidden files, out of the experiment's and
                  the agents' reach), the manifest of hashes, the evaluator warnings
"""
