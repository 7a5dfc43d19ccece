"""DFT outbox: duplicate detection and the submit queue (no Prefect); the canonical form and the
fingerprint of a structure are `mlip_autopipec.store.fingerprint`'s."""

from mlip_autopipec.outbox.descriptor import composition_key, descriptor, near_pairs
from mlip_autopipec.outbox.match import Match, find_match
from mlip_autopipec.outbox.outbox import (DEFAULT_NEAR_TOLERANCE, SKIP_FILE, SUBMIT_FILE, Candidate,
                                          OutboxReport, process_outbox, read_candidates, read_submitted)

__all__ = ["DEFAULT_NEAR_TOLERANCE", "SKIP_FILE", "SUBMIT_FILE", "Candidate",
           "Match", "OutboxReport", "composition_key", "descriptor",
           "find_match", "near_pairs", "process_outbox", "read_candidates", "read_submitted"]
