"""Answers that proxies in front of an upstream send instead of the upstream's own format.

Gateways meet these when a relay (nginx, Cloudflare, a New-API style key pool) sits between them
and the provider, so every fake offers them as scenarios.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

# New API (a popular key-pooling relay) answers this when no upstream channel is available.
NEW_API_CHANNEL_FAILED = (
    b'{"error":{"message":"get_channel_failed","type":"new_api_error","param":"",'
    b'"code":"get_channel_failed"}}'
)


@dataclass(frozen=True, slots=True)
class ProxyAnswer:
    """A body not in the provider's format, with the headers the proxy adds."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def nginx_502() -> ProxyAnswer:
    return ProxyAnswer(502, NGINX_502, "text/html", {"Server": "nginx"})


def new_api_channel_failed() -> ProxyAnswer:
    return ProxyAnswer(500, NEW_API_CHANNEL_FAILED, "application/json")


def cloudflare_524(host: str) -> ProxyAnswer:
    """Cloudflare's "A timeout occurred" page, trimmed of its styling."""
    ray = secrets.token_hex(8)
    page = f"""<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<!--[if gt IE 8]><!--> <html class="no-js" lang="en-US"> <!--<![endif]-->
<head>
<title>{host} | 524: A timeout occurred</title>
<meta charset="UTF-8" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<meta name="robots" content="noindex, nofollow" />
</head>
<body>
<div id="cf-wrapper">
  <div id="cf-error-details" class="p-0">
    <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">
      <h1 class="inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl text-black-dark">
        <span class="inline-block">A timeout occurred</span>
        <span class="code-label">Error code 524</span>
      </h1>
    </header>
    <div class="w-240 lg:w-full mx-auto mb-8 lg:px-8">
      <h2 class="text-3xl leading-tight font-normal mb-4">What happened?</h2>
      <p>The origin web server timed out responding to this request.</p>
      <h2 class="text-3xl leading-tight font-normal mb-4">What can I do?</h2>
      <p>Please try again in a few minutes.</p>
    </div>
    <div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto">
      <p class="text-13">
        <span>Cloudflare Ray ID: <strong class="font-semibold">{ray}</strong></span>
        <span>Performance &amp; security by Cloudflare</span>
      </p>
    </div>
  </div>
</div>
</body>
</html>
"""
    headers = {"Server": "cloudflare", "CF-RAY": f"{ray}-FRA"}
    return ProxyAnswer(524, page.encode(), "text/html", headers)
