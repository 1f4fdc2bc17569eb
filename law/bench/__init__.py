"""The parts of ``law compare`` (see ``law.compare`` for what a comparison holds identical).

``experiment``: settings resolved, the folder and its settings lock; ``policy``:
the LAW policy given or searched; ``runs``: one (method, seed) run of any kind;
``report``: metrics, aggregation, table and files; ``figures``: the plots.
"""
