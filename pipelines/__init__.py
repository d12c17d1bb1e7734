"""The StreamGuard KFP pipeline, its compile profiles and entry points."""
