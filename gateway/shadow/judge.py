"""Side-by-side judgement of a shadow pair: the primary's answer (what the user got) against the candidate's.

Verdicts are from the candidate's side: "win", "tie" or "loss".

1. Cheap signals first: an answer that failed, is empty, refuses, was cut at the length limit, or is not
   JSON when JSON was asked for has a problem. One side with a problem and the other without decides the
   pair; identical answers tie; both with problems tie.
2. Otherwise the LLM judge, when the alias names one (`shadow.judge`, a deployment of this gateway): asked
   twice with the answers in both orders, to cancel position bias. Both orders preferring the same side
   decide; anything else is a tie. Without a judge, an undecided pair is a tie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

DEFAULT_PROMPT = """You compare two answers of a customer-support assistant to the same question.

Question:
{question}

Answer A:
{a}

Answer B:
{b}

Which answer serves the customer better (correct, complete, polite, to the point)? Reply with one word: A, B or TIE."""

_REFUSAL = re.compile(
    r"\b(i can(?:no|')t help|i am unable to|i'm unable to|i cannot assist|as an ai\b|"
    r"je ne peux pas vous aider|je ne suis pas en mesure)",
    re.IGNORECASE,
)
_VERDICT = re.compile(r"\b(A|B|TIE)\b")


@dataclass(slots=True)
class Side:
    """One side of a pair, as the judge sees it."""

    text: str = ""
    status: int = 200
    finish_reason: str | None = None
    problems: list[str] = field(default_factory=list)


def answer_side(status: int, parsed: Any, wants_json: bool) -> Side:
    """The text of a chat completion and its problems (cheap signals)."""
    side = Side(status=status)
    if status != 200 or not isinstance(parsed, dict):
        side.problems.append("error")
        return side
    choices = parsed.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content = message.get("content")
    side.text = content if isinstance(content, str) else ""
    side.finish_reason = choice.get("finish_reason")
    if not side.text.strip() and not message.get("tool_calls"):
        side.problems.append("empty")
    if message.get("refusal") or _REFUSAL.search(side.text[:400]):
        side.problems.append("refusal")
    if side.finish_reason == "length":
        side.problems.append("truncated")
    if wants_json and side.text:
        try:
            orjson.loads(side.text)
        except orjson.JSONDecodeError:
            side.problems.append("invalid_json")
    return side


def cheap_verdict(primary: Side, candidate: Side) -> str | None:
    if primary.problems and not candidate.problems:
        return "win"
    if candidate.problems and not primary.problems:
        return "loss"
    if primary.problems or primary.text.strip() == candidate.text.strip():
        return "tie"
    return None


AskJudge = Callable[[str], Awaitable[str]]  # prompt → the judge's reply text


class Judge:
    def __init__(self, ask: AskJudge | None, prompt: str | None = None) -> None:
        self._ask = ask
        self._prompt = prompt or DEFAULT_PROMPT

    @property
    def has_model(self) -> bool:
        return self._ask is not None

    async def compare(self, question: str, primary: Side, candidate: Side) -> tuple[str, str]:
        """(verdict, how): how is "signals", "judge" or "undecided"."""
        verdict = cheap_verdict(primary, candidate)
        if verdict is not None:
            return verdict, "signals"
        ask = self._ask
        if ask is None:
            return "tie", "undecided"
        first = await self._pick(ask, question, primary.text, candidate.text)  # A = primary
        second = await self._pick(ask, question, candidate.text, primary.text)  # A = candidate
        if first == "B" and second == "A":
            return "win", "judge"
        if first == "A" and second == "B":
            return "loss", "judge"
        return "tie", "judge"

    async def _pick(self, ask: AskJudge, question: str, a: str, b: str) -> str:
        reply = await ask(self._prompt.format(question=question, a=a, b=b))
        found = _VERDICT.search(reply.upper())
        return found.group(1) if found else "TIE"
