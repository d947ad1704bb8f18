"""The admin API, behind the admin key (auth.admin_key_sha256)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin")
