"""Data: the Sample contract, loaders, ingest (validate, quarantine, split), synthetic demo data."""
