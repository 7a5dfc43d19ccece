"""Pydantic schemas for everything a user configures; unknown keys are errors, never ignored."""
