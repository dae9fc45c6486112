"""Schemathesis hooks for the API fuzz test (loaded through SCHEMATHESIS_HOOKS): a 4xx must say why."""

import os
from pathlib import Path

import schemathesis


@schemathesis.check
def client_error_has_a_reason(ctx, response, case):
    """Every 4xx answer is JSON {"error": "<non-empty reason>"}."""
    marker = os.environ.get("EDGEPOC_ST_MARKER")
    if marker:  # lets the test see that this check really ran
        Path(marker).touch()
    if 400 <= response.status_code < 500:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not (isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"].strip()):
            raise AssertionError(f"{response.status_code} without {{'error': reason}}: {response.text[:120]!r}")
