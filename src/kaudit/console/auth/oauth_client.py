"""Authlib's OAuth 2 client over httpx, for the OIDC and GitHub logins.

Authlib now prefers the httpx2 fork and warns, on every import, that its httpx client is
deprecated; kaudit and the libraries it uses are on httpx, which Authlib still supports.
The warning is silenced here, where the client is imported, so that it does not reach
the person running the console (it printed in the middle of `make demo`).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

__all__ = ["AsyncOAuth2Client"]
