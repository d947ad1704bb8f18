"""The price table (config/pricing.yaml): the cost in USD of a usage record."""

from __future__ import annotations

from gateway.config import Price


class Pricing:
    def __init__(self, table: dict[str, Price]) -> None:
        self._table = table

    def known(self, model: str) -> bool:
        return model in self._table

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Unknown models cost 0 here; `gateway config check` warns about them."""
        price = self._table.get(model)
        if price is None:
            return 0.0
        return (prompt_tokens * price.input_per_1m + completion_tokens * price.output_per_1m) / 1_000_000
