"""CORS for the open data: browsers on other sites may GET it; admin routes never get CORS headers.

Starlette's CORSMiddleware answers every path alike, so admin routes (registration, dead
letters) are passed around it: their responses carry no Access-Control-* header, and a
preflight for them reaches the app, which has no OPTIONS route and refuses it, so a page
on another site can never call them from a browser.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send


def parse_origins(setting: str) -> list[str]:
    """CITYSENSE_API_CORS_ORIGINS: '*' or comma-separated origins; '' means no CORS."""
    return [origin.strip() for origin in setting.split(",") if origin.strip()]


class OpenDataCors:
    def __init__(self, app: ASGIApp, origins: list[str], admin_routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["GET"], max_age=600)
        self.admin = {(method, route.path) for route in admin_routes if isinstance(route, Route)
                      for method in route.methods or ()}

    def _is_admin(self, scope: Scope) -> bool:
        method = scope["method"]
        if method == "OPTIONS":  # a preflight names the method it asks for
            asked = dict(scope["headers"]).get(b"access-control-request-method", b"").decode("latin-1")
            method = asked.upper() or method
        return (method, scope["path"]) in self.admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._is_admin(scope):
            await self.app(scope, receive, send)
        else:
            await self.cors(scope, receive, send)
