"""Store passwords never reach a file, a log or Prefect's database.

A PostgreSQL store URL is written without its password: `postgresql://user@host:port/db`. libpq
(psycopg2, under ase.db) then takes the password from PGPASSWORD or ~/.pgpass, as every
PostgreSQL tool does. A URL given *with* a password still works: `password_to_environment`
moves the password into this process's PGPASSWORD (which worker processes inherit) and returns
the URL without it, and that URL is the only one passed on (flow parameters, task inputs,
manifest.json, messages). `redact` hides a password in any text that might still hold one.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

# The password runs to the last "@" of the authority: a raw "@" in it (unescaped) stays with it.
_PASSWORD_IN_URL = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^\s/]*)(?P<at>@)",
                              re.IGNORECASE)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _PASSWORD_IN_URL.sub(lambda match: f"{match['head']}{REDACTED}{match['at']}", text)


def password_to_environment(url: str) -> str:
    """A PostgreSQL URL without its password; the password, if there was one, goes to PGPASSWORD
    (of this process and of the processes it starts). Other URLs and paths are returned as they are."""
    if not str(url).startswith(("postgresql://", "postgres://")):
        return url
    match = _PASSWORD_IN_URL.search(url)
    if match is None:
        return url
    os.environ["PGPASSWORD"] = unquote(match["password"])
    user_part = match["head"][:-1]  # without the ':' before the password
    return url[:match.start()] + user_part + "@" + url[match.end():]


__all__ = ["REDACTED", "password_to_environment", "redact"]
