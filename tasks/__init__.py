"""Prefect tasks: thin wrappers over mlip_autopipec library calls (retries, caching, artifacts)."""
