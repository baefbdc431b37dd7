"""Environments: building them, wrapping and preprocessing Mario, stages, and their shapes.

Used by actors, evaluation and (for shapes) the learner; imports no config at module level.
:mod:`envs.factory` builds envs, :mod:`envs.spec` gives their shapes without one,
:mod:`envs.wrappers` and :mod:`envs.preprocessing` are the wrapper stack, :mod:`envs.stages`
the stage names and :mod:`envs.curriculum` stage sampling, :mod:`envs.restarts` frontier
restarts and :mod:`envs.stall` stall termination.
"""
