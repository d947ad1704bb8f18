"""Files of the OpenAI Files API, as the Batch API uses them: uploaded inputs (purpose "batch") and the
output and error files the gateway writes.

They live in Redis (`{prefix}file:{id}`: the bytes and their metadata in one hash), not on disk: every
replica must read a batch's input and any replica may write its output, and pods have no shared disk. The
price is a size limit (`batches.max_file_bytes`, 20 MiB by default; Redis holds them in memory) and an
expiry (`batches.file_ttl_s`, 30 days like OpenAI's batch files). Without Redis they live in the process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

PURPOSES = frozenset({"batch", "batch_output"})


@dataclass(frozen=True, slots=True)
class FileInfo:
    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    owner: str  # the client key's name that uploaded it (outputs: the batch's owner)

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def new_file_id() -> str:
    return "file-" + os.urandom(12).hex()


class FileStore:
    def __init__(self, redis=None, prefix: str = "gw:", ttl_s: int = 30 * 86400) -> None:
        self._redis = redis
        self._prefix = f"{prefix}file:"
        self._ttl_s = ttl_s
        self._memory: dict[str, tuple[FileInfo, bytes]] = {}

    async def put(self, content: bytes, filename: str, purpose: str, owner: str) -> FileInfo:
        info = FileInfo(new_file_id(), len(content), int(time.time()), filename, purpose, owner)
        if self._redis is None:
            self._memory[info.id] = (info, content)
            return info
        key = self._prefix + info.id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "content": content,
                    "filename": filename,
                    "purpose": purpose,
                    "owner": owner,
                    "created_at": info.created_at,
                },
            )
            pipe.expire(key, self._ttl_s)
            await pipe.execute()
        return info

    async def info(self, file_id: str) -> FileInfo | None:
        if self._redis is None:
            found = self._memory.get(file_id)
            return found[0] if found else None
        fields = await self._redis.hmget(self._prefix + file_id, "filename", "purpose", "owner", "created_at")
        if fields[0] is None:
            return None
        size = await self._redis.hstrlen(self._prefix + file_id, "content")
        filename, purpose, owner, created = (f.decode() for f in fields)
        return FileInfo(file_id, size, int(created), filename, purpose, owner)

    async def content(self, file_id: str) -> bytes | None:
        if self._redis is None:
            found = self._memory.get(file_id)
            return found[1] if found else None
        return await self._redis.hget(self._prefix + file_id, "content")

    async def list(self, owner: str, purpose: str | None = None) -> list[FileInfo]:
        if self._redis is None:
            infos = [info for info, _ in self._memory.values()]
        else:
            infos = []
            async for key in self._redis.scan_iter(match=self._prefix + "*", count=500):
                info = await self.info(key.decode()[len(self._prefix) :])
                if info is not None:
                    infos.append(info)
        return sorted(
            (i for i in infos if i.owner == owner and purpose in (None, i.purpose)),
            key=lambda i: i.created_at,
            reverse=True,
        )

    async def delete(self, file_id: str) -> bool:
        if self._redis is None:
            return self._memory.pop(file_id, None) is not None
        return bool(await self._redis.delete(self._prefix + file_id))
