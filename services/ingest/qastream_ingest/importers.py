"""File importers: turn exported files into canonical Conversations, streaming, one record at a time.

Every parser is a generator of `Conversation | ImportProblem`: a bad record is reported with where it was
and why, and the import goes on. `read_conversations` detects the format from the file's first bytes.

Formats:
- `conversations`: our own JSON Lines, one Conversation per line;
- `star`: the STAR dialogues (shared/data/conversations/star.jsonl), with synthetic agents and teams;
- `zendesk`: a Zendesk-style ticket export, either one `{"tickets": [...]}` document or one ticket per line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

import ijson
from pydantic import ValidationError

from qastream_shared.conversation import Channel, Conversation, Role, Turn

_HEAD_BYTES = 64 * 1024
_MAX_FIRST_LINE = 64 * 1024 * 1024
_ZENDESK_DOCUMENT = re.compile(rb'^\s*\{\s*"tickets"\s*:')

STAR_AGENTS = 40
STAR_TEAMS = 5


class ImportFormat(StrEnum):
    conversations = "conversations"
    star = "star"
    zendesk = "zendesk"


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A record that could not be imported. `line` is 1-based; `ticket` is the 1-based position of a
    ticket inside a `{"tickets": [...]}` document, where lines mean nothing."""

    reason: str
    line: int | None = None
    ticket: int | None = None


class UnknownFormat(ValueError):
    pass


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def _json_lines(lines: Iterable[bytes | str]) -> Iterator[tuple[int, dict[str, Any] | ImportProblem]]:
    """(line number, parsed object or problem) for every non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield number, ImportProblem(f"not JSON: {exc}", line=number)
            continue
        if not isinstance(obj, dict):
            yield number, ImportProblem(f"expected a JSON object, got {type(obj).__name__}", line=number)
            continue
        yield number, obj


def parse_conversations(lines: Iterable[bytes | str]) -> Iterator[Conversation | ImportProblem]:
    """Our own JSON Lines: one Conversation per line."""
    for number, obj in _json_lines(lines):
        if isinstance(obj, ImportProblem):
            yield obj
            continue
        try:
            yield Conversation.model_validate(obj)
        except ValidationError as exc:
            yield ImportProblem(_reason(exc), line=number)


def star_agent(conversation_id: str) -> tuple[str, str]:
    """(agent id, team) for a STAR dialogue, which has neither: a stable hash spreads dialogues over
    STAR_AGENTS agents, and each agent belongs to one of STAR_TEAMS teams, so demos have both."""
    digest = hashlib.blake2b(conversation_id.encode(), digest_size=8).digest()
    agent = int.from_bytes(digest, "big") % STAR_AGENTS
    return f"star-agent-{agent + 1:02d}", f"star-team-{agent % STAR_TEAMS + 1}"


def parse_star(lines: Iterable[bytes | str]) -> Iterator[Conversation | ImportProblem]:
    """STAR records: turns as they are, labels kept under metadata["labels"]."""
    for number, obj in _json_lines(lines):
        if isinstance(obj, ImportProblem):
            yield obj
            continue
        try:
            conversation_id = obj["conversation_id"]
            turns = [Turn(role=t["role"], text=t["text"], ts=t.get("ts")) for t in obj["turns"]]
            agent_id, team = star_agent(str(conversation_id))
            yield Conversation(
                conversation_id=conversation_id,
                channel=obj.get("channel", Channel.chat),
                language=obj.get("language", "en"),
                agent_ids=[agent_id],
                team=team,
                started_at=turns[0].ts if turns else None,
                ended_at=turns[-1].ts if turns else None,
                turns=turns,
                metadata={"source": obj.get("source", "star"), "labels": obj.get("labels", {})},
            )
        except ValidationError as exc:
            yield ImportProblem(_reason(exc), line=number)
        except (KeyError, TypeError) as exc:
            yield ImportProblem(f"not a STAR record: missing or malformed {exc}", line=number)


# Zendesk `via.channel` values: ticket-style channels read like email, messaging ones like chat.
_ZENDESK_CHANNELS = {
    "email": Channel.email,
    "web": Channel.email,
    "api": Channel.email,
    "mobile_sdk": Channel.email,
    "chat": Channel.chat,
    "chat_transcript": Channel.chat,
    "native_messaging": Channel.chat,
    "messaging": Channel.chat,
    "sms": Channel.chat,
    "whatsapp": Channel.chat,
    "voice": Channel.voice,
    "phone": Channel.voice,
    "twitter": Channel.social,
    "facebook": Channel.social,
    "instagram_dm": Channel.social,
}
_ZENDESK_CSAT = {"good": 5, "bad": 1}
# Ticket fields mapped onto Conversation fields; everything else is kept under metadata.
_ZENDESK_MAPPED = {
    "id",
    "via",
    "assignee_id",
    "group_id",
    "requester_id",
    "created_at",
    "updated_at",
    "tags",
    "satisfaction_rating",
    "comments",
}


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def zendesk_ticket(ticket: dict[str, Any]) -> Conversation:
    """One ticket → Conversation. Public comments are the conversation; private ones are internal notes
    and are left out (only counted). The requester is the customer; any other author is an agent."""
    requester = _optional_str(ticket.get("requester_id"))
    comments = ticket.get("comments") or []
    public = [c for c in comments if c.get("public", True)]
    if not public:
        raise ValueError("ticket has no public comments")
    turns: list[Turn] = []
    agents: list[str] = []
    assignee = _optional_str(ticket.get("assignee_id"))
    if assignee is not None:
        agents.append(assignee)
    for comment in public:
        author = _optional_str(comment.get("author_id"))
        role = Role.customer if author is not None and author == requester else Role.agent
        if role is Role.agent and author is not None and author not in agents:
            agents.append(author)
        text = comment.get("plain_body") or comment.get("body") or ""
        turns.append(Turn(role=role, text=text, author=author, ts=comment.get("created_at")))
    via = (ticket.get("via") or {}).get("channel")
    rating = ticket.get("satisfaction_rating") or {}
    metadata = {k: v for k, v in ticket.items() if k not in _ZENDESK_MAPPED}
    metadata["source"] = "zendesk"
    metadata["private_comments"] = len(comments) - len(public)
    if via is not None:
        metadata["via_channel"] = via
    return Conversation(
        conversation_id=f"zd-{ticket['id']}",
        channel=_ZENDESK_CHANNELS.get(str(via), Channel.email),
        agent_ids=agents,
        team=_optional_str(ticket.get("group_id")),
        customer_id=requester,
        started_at=ticket.get("created_at") or turns[0].ts,
        ended_at=turns[-1].ts or ticket.get("updated_at"),
        turns=turns,
        tags=ticket.get("tags") or [],
        csat=_ZENDESK_CSAT.get(str(rating.get("score"))),
        metadata=metadata,
    )


def _zendesk_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return _reason(exc)
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc)


def parse_zendesk_lines(lines: Iterable[bytes | str]) -> Iterator[Conversation | ImportProblem]:
    """A Zendesk export with one ticket JSON object per line."""
    for number, obj in _json_lines(lines):
        if isinstance(obj, ImportProblem):
            yield obj
            continue
        try:
            yield zendesk_ticket(obj)
        except (ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
            yield ImportProblem(_zendesk_problem(exc), line=number)


def parse_zendesk_document(stream: IO[bytes]) -> Iterator[Conversation | ImportProblem]:
    """A `{"tickets": [...]}` document, streamed ticket by ticket so a large export never sits in memory."""
    position = 0
    try:
        for position, ticket in enumerate(ijson.items(stream, "tickets.item", use_float=True), start=1):
            if not isinstance(ticket, dict):
                yield ImportProblem(f"expected a ticket object, got {type(ticket).__name__}", ticket=position)
                continue
            try:
                yield zendesk_ticket(ticket)
            except (ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
                yield ImportProblem(_zendesk_problem(exc), ticket=position)
    except ijson.JSONError as exc:
        # The document itself is broken: nothing after this point can be read.
        yield ImportProblem(f"invalid JSON after ticket {position}: {exc}", ticket=position + 1)


def detect_format(head: bytes) -> ImportFormat:
    """The format of a file from its first bytes, which must hold at least its first complete line."""
    if _ZENDESK_DOCUMENT.match(head):
        return ImportFormat.zendesk
    first = next((line for line in head.splitlines() if line.strip()), b"")
    try:
        obj = json.loads(first)
    except ValueError:
        raise UnknownFormat(
            "the first line is not a JSON object, nor the start of a tickets document"
        ) from None
    if isinstance(obj, dict):
        if obj.get("source") == "star":
            return ImportFormat.star
        if "comments" in obj and "requester_id" in obj:
            return ImportFormat.zendesk
        if "turns" in obj:
            return ImportFormat.conversations
    raise UnknownFormat("the first record is neither a conversation, a STAR dialogue nor a Zendesk ticket")


def read_conversations(
    stream: IO[bytes], fmt: ImportFormat | None = None
) -> Iterator[Conversation | ImportProblem]:
    """Conversations (and problems) from a seekable binary file, detecting the format when not given.

    Raises UnknownFormat before yielding anything when the format cannot be told.
    """
    start = stream.tell()
    head = stream.read(_HEAD_BYTES)
    stream.seek(start)
    document = _ZENDESK_DOCUMENT.match(head) is not None
    if fmt is None:
        if not document and b"\n" not in head.lstrip():
            # One long first line: read all of it, so detection sees a whole JSON object.
            head = stream.readline(_MAX_FIRST_LINE)
            stream.seek(start)
        fmt = detect_format(head)
    if fmt is ImportFormat.conversations:
        return parse_conversations(stream)
    if fmt is ImportFormat.star:
        return parse_star(stream)
    return parse_zendesk_document(stream) if document else parse_zendesk_lines(stream)
