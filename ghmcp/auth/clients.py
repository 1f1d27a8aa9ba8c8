"""The MCP clients this server knows: registered ones (RFC 7591) and metadata documents (auth/cimd.py).

A client's registered scope is only a ceiling: the user consents to each request's scopes, so every
client, registered or identified by URL, may ask for any scope of the vocabulary.
"""

from __future__ import annotations

import time

from mcp.shared.auth import OAuthClientInformationFull

from ghmcp.auth.cimd import ClientDocuments, DocumentError, is_document_url
from ghmcp.auth.keys import Keyring
from ghmcp.auth.registration import Client, trim_registration
from ghmcp.auth.scopes import SCOPES
from ghmcp.config import Settings
from ghmcp.storage import Storage


class Clients:
    def __init__(self, settings: Settings, storage: Storage, keyring: Keyring) -> None:
        self.settings = settings
        self.storage = storage
        self.keyring = keyring
        # Its own connection pool: slow client sites must not hold connections that tool calls need.
        self.documents = ClientDocuments(settings.allowed_redirect_schemes, settings.cimd_allow_http_loopback)

    def is_document(self, client_id: str) -> bool:
        return is_document_url(client_id, self.settings.cimd_allow_http_loopback)

    async def get(self, client_id: str) -> OAuthClientInformationFull | None:
        if self.is_document(client_id):
            try:
                document = await self.documents.get(client_id)
            except DocumentError:
                return None  # the /authorize page says why (web/routes.py); /token just refuses
            document.scope = " ".join(SCOPES)
            return document
        info_json = await self.storage.get_client(client_id)
        if info_json is None:
            return None
        client = Client.model_validate_json(info_json)
        if client.client_secret:
            client.client_secret = self.keyring.decrypt_client_secret(client.client_secret)
        return client

    async def register(self, client_info: OAuthClientInformationFull) -> None:
        trim_registration(client_info, self.settings.allowed_redirect_schemes)
        stored = client_info.model_copy()
        stored.scope = " ".join(SCOPES)
        if stored.client_secret:
            stored.client_secret = self.keyring.encrypt_client_secret(stored.client_secret)
        await self.storage.save_client(client_info.client_id, stored.model_dump_json(exclude_none=True), time.time())
