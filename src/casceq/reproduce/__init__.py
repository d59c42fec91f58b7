"""``casceq reproduce``: the paper's experiment at this machine's scale, end to end, with a findings page.

- ``plan``: the models, items per task, conditions and mechanistic sizes (and the experiment TOML);
- ``pipeline``: the resumable stage runner (behavioural run, captures, probes, lens, implicit, erasure, report);
- ``mech``: the mechanistic stages;
- ``rules``, ``claims_behaviour``, ``claims_mech``: the claims and their verdict rules;
- ``findings``: the findings page (``findings.md`` / ``findings.json``).
"""
