"""The base of every recipe model: unknown keys forbidden, defaults validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
