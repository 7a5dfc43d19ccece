"""DFT outbox: canonical forms, duplicate detection and the submit queue (no Prefect)."""

from mlip_autopipec.outbox.canonical import DEFAULT_TOLERANCE, canonical_fingerprint, canonicalize
from mlip_autopipec.outbox.descriptor import composition_key, descriptor, near_pairs
from mlip_autopipec.outbox.match import Match, find_match
from mlip_autopipec.outbox.outbox import (DEFAULT_NEAR_TOLERANCE, SKIP_FILE, SUBMIT_FILE, Candidate,
                                          OutboxReport, process_outbox, read_candidates, read_submitted)

__all__ = ["DEFAULT_TOLERANCE", "DEFAULT_NEAR_TOLERANCE", "SKIP_FILE", "SUBMIT_FILE", "Candidate",
           "Match", "OutboxReport", "canonical_fingerprint", "canonicalize", "composition_key", "descriptor",
           "find_match", "near_pairs", "process_outbox", "read_candidates", "read_submitted"]
