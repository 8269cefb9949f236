"""An HTTP POST that sends exactly what a test says (a hostile client, for the receivers).

``urllib`` adds and checks headers on its own; a test of a receiver's limits needs
to send a lying ``Content-Length``, none at all, or a body that is not what its
``Content-Encoding`` says.
"""

import http.client


def post_raw(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float = 30,
    host: str = "127.0.0.1",
) -> tuple[int, str, bytes]:
    """POST ``body`` with exactly ``headers`` (not even ``Accept-Encoding`` added).

    Returns (status, reason phrase, response body). Connection errors (a listener
    that drops the request) propagate, as ``ConnectionError`` or
    ``http.client.HTTPException``.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        return response.status, response.reason, response.read()
    finally:
        conn.close()
