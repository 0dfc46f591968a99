"""The HTML pages of the web app (``templates/web/*.html.j2``) and its stylesheet.

Each page is rendered with the newsletter's title, request address and language, and
carries the security headers (:data:`~digest_mailer.web.guard.HEADERS`); an address is
shown masked (:func:`mask`). What each page says is in its template; which page a
request gets is the routes' to decide (:mod:`digest_mailer.web.app`).
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest_mailer.composer import default_templates, render_template, template_environment
from digest_mailer.config import Config
from digest_mailer.web.guard import HEADERS


def mask(address: str) -> str:
    """``j***@corp.test``: enough for a reader to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


class Pages:
    """The pages, in the newsletter's words, and the stylesheet."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.env = template_environment(config)
        self.css = (default_templates() / "web" / "web.css").read_bytes()

    def page(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        nl = self.config.newsletter
        values = {
            "newsletter": nl.title,
            "request_address": nl.request_address,
            "language": nl.language,
            **context,
        }
        body = render_template(self.env, f"web/{name}.html.j2", values)
        return HTMLResponse(body, status_code=code, headers=HEADERS)

    def not_found(self) -> HTMLResponse:
        return self.page("not_found", 404)

    def stylesheet(self, request: Request) -> Response:
        headers = {**HEADERS, "Cache-Control": "public, max-age=3600"}
        return Response(self.css, media_type="text/css", headers=headers)
