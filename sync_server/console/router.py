"""The console's router: every page module's ``ROUTES`` under ``/console``, the signed-in
manager as a dependency, the CSRF and origin check before every handler, and the static
files. None of it is in the OpenAPI schema: the console answers HTML, not the API's JSON."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from sync_server.console import dashboard, devices, pages, scans, setup, tickets
from sync_server.console.assets import STATIC_DIR, TEMPLATES_DIR
from sync_server.console.web import (
    PREFIX,
    SignInRequired,
    check_request,
    provide_manager,
    sign_in_required,
    too_many_requests,
)
from sync_server.http.rate_limiting import RateLimited

__all__ = ["TEMPLATES_DIR", "console_router"]


def console_router() -> Router:
    """Everything under ``/console``: the pages and their static files."""
    return Router(
        path=PREFIX,
        route_handlers=[
            *pages.ROUTES,
            *setup.ROUTES,
            *devices.ROUTES,
            *scans.ROUTES,
            *tickets.ROUTES,
            *dashboard.ROUTES,
            create_static_files_router(
                path="/static", directories=[STATIC_DIR], include_in_schema=False
            ),
        ],
        dependencies={"manager": Provide(provide_manager)},
        before_request=check_request,
        exception_handlers={SignInRequired: sign_in_required, RateLimited: too_many_requests},
        include_in_schema=False,
    )
