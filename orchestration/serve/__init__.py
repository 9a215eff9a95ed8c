"""Real-time serving: the event collector, triggers, and the profile lookup API.

Everything here runs beside the pipeline without ever taking DuckDB's single write lock: the
collector makes events durable in JSONL files the events connector loads later, and profile
lookups and trigger conditions read a Parquet snapshot that each dbt build refreshes.
"""
