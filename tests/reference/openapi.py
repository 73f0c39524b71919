"""openapi-core adapters for httpx exchanges, shared by the conformance tests of client and simulator."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict


@dataclass
class OpenAPIRequest:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str

    @classmethod
    def of(cls, request: httpx.Request) -> OpenAPIRequest:
        url = urlsplit(str(request.url))
        return cls(host_url=f"{url.scheme}://{url.netloc}", path=url.path, method=request.method.lower(),
                   parameters=RequestParameters(query=ImmutableMultiDict(list(request.url.params.multi_items())),
                                                header=Headers(list(request.headers.items())),
                                                cookie=ImmutableMultiDict()),
                   body=request.content or None,
                   content_type=request.headers.get("content-type", "application/json"))


@dataclass
class OpenAPIResponse:
    status_code: int
    headers: Headers
    data: bytes | None
    content_type: str

    @classmethod
    def of(cls, response: httpx.Response, content: bytes | None = None) -> OpenAPIResponse:
        body = response.content if content is None else content
        return cls(status_code=response.status_code, headers=Headers(list(response.headers.items())),
                   data=body or None,
                   content_type=response.headers.get("content-type", "application/json").split(";")[0])
