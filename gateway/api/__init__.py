"""The HTTP layer: openai.py (the OpenAI API), health.py, admin.py and canary.py (admin key)."""


def request_headers(request) -> dict[str, str]:
    """A request's headers as a plain dict with lower-case names, as the pipeline's steps read them."""
    return dict(request.headers.items())
