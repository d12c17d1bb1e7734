"""Thin KFP wrappers, one module a stage: parse arguments, call streamguard, fill KFP artifacts."""
