"""Gymnasium wrappers that perturb observations against a victim network (built on ``rlrobust.attacks``)."""
