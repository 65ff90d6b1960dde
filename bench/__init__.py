"""`make bench`: trolleyfs measured beside its baselines in one run (see
``__main__``); each module adds the rows of one part (views, the cluster
tier, NIfTI, limits and audit, WebDAV, de-identification).  Not tests:
nothing here asserts on a timing."""
