"""Secrets out of everything the CLI prints: passwords in URLs (redis://:PASSWORD@host) and the values of
environment variables that hold keys (LIGHT_API_KEY, ..._TOKEN, ..._SECRET, ..._PASSWORD). (Personal data
in the request log is gateway/redact.py's.)

A key the CLI was asked to create is printed as is: it is in no environment variable.
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Sequence, TextIO

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:@/\s]*):(?P<password>[^@/\s]+)@", re.IGNORECASE)
_SECRET_NAME = re.compile(r"(KEY|KEYS|TOKEN|SECRET|PASSWORD|PASSWD)$")
MASK = "***"


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of variables whose names say they hold a secret (long enough not to mask common words)."""
    values = {value for name, value in environ.items() if _SECRET_NAME.search(name.upper()) and len(value) >= 8}
    for value in list(values):  # several keys in one variable (a deployment's api_keys)
        values.update(part for part in re.split(r"[\s,;]+", value) if len(part) >= 8)
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingStream:
    """A text stream that masks secrets in what goes through it (sys.stdout / sys.stderr of the CLI)."""

    def __init__(self, stream: TextIO, environ: Mapping[str, str] | None = None) -> None:
        self._stream = stream
        self._secrets = secret_values(os.environ if environ is None else environ)

    def write(self, text: str) -> int:
        self._stream.write(redact(text, self._secrets))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
