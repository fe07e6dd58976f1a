import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qastream_ingest.importers import (
    STAR_AGENTS,
    STAR_TEAMS,
    ImportFormat,
    ImportProblem,
    UnknownFormat,
    detect_format,
    read_conversations,
    star_agent,
)
from qastream_shared.conversation import Channel, Conversation, Role

FIXTURES = Path(__file__).parent / "fixtures"
ZENDESK = FIXTURES / "zendesk_tickets.json"
STAR = Path(__file__).parents[3].parent / "shared" / "data" / "conversations" / "star.jsonl"

STAR_LINE = {
    "source": "star",
    "conversation_id": "star-0979",
    "channel": "chat",
    "language": "en",
    "turns": [
        {"role": "customer", "text": "Hello", "ts": "2020-05-21T17:04:12Z"},
        {"role": "agent", "text": "Hello, how can I help?", "ts": "2020-05-21T17:04:20Z"},
        {"role": "customer", "text": "Find a Shadyside Inn?", "ts": "2020-05-21T17:04:51Z"},
    ],
    "labels": {
        "user_says_agent_calm_helpful": None,
        "happy_path": False,
        "turn_actions": [None, "hello", None],
    },
}


def lines(*records: object) -> io.BytesIO:
    return io.BytesIO(
        b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)
    )


def split(items: list[Conversation | ImportProblem]) -> tuple[list[Conversation], list[ImportProblem]]:
    return [i for i in items if isinstance(i, Conversation)], [
        i for i in items if isinstance(i, ImportProblem)
    ]


# --- our own JSON Lines ----------------------------------------------------------------------------------


def test_own_jsonl_reports_bad_lines_and_goes_on() -> None:
    good = {"conversation_id": "c-1", "turns": [{"role": "customer", "text": "hi"}], "crm_ref": "X1"}
    items = list(
        read_conversations(
            lines(
                good,
                b"",
                b"{not json",
                [1, 2],
                {"conversation_id": "c 2", "turns": []},
                {**good, "conversation_id": "c-3"},
            )
        )
    )
    conversations, problems = split(items)
    assert [c.conversation_id for c in conversations] == ["c-1", "c-3"]
    assert conversations[0].metadata == {"crm_ref": "X1"}
    assert [p.line for p in problems] == [3, 4, 5]
    assert problems[0].reason.startswith("not JSON")
    assert problems[1].reason == "expected a JSON object, got list"
    assert problems[2].reason.startswith("conversation_id: String should match pattern")


# --- STAR ------------------------------------------------------------------------------------------------


def test_star_record_is_mapped_with_synthetic_agent_and_labels() -> None:
    [conversation] = read_conversations(lines(STAR_LINE))
    assert isinstance(conversation, Conversation)
    assert conversation.conversation_id == "star-0979"
    assert conversation.channel is Channel.chat
    assert [t.role for t in conversation.turns] == [Role.customer, Role.agent, Role.customer]
    assert conversation.started_at == datetime(2020, 5, 21, 17, 4, 12, tzinfo=UTC)
    assert conversation.ended_at == datetime(2020, 5, 21, 17, 4, 51, tzinfo=UTC)
    assert conversation.metadata == {"source": "star", "labels": STAR_LINE["labels"]}
    assert (conversation.agent_id, conversation.team) == star_agent("star-0979")


def test_star_agents_are_stable_and_each_belongs_to_one_team() -> None:
    assignments = {star_agent(f"star-{i:04d}") for i in range(5000)}
    agents = {agent for agent, _ in assignments}
    teams = {team for _, team in assignments}
    assert len(agents) == STAR_AGENTS
    assert len(teams) == STAR_TEAMS
    assert len(assignments) == STAR_AGENTS  # an agent is always in the same team
    assert star_agent("star-0001") == star_agent("star-0001")


def test_star_bad_record_is_reported() -> None:
    broken = {**STAR_LINE, "turns": [{"role": "wizard", "text": "x"}]}
    missing = {"source": "star", "conversation_id": "star-1"}
    _, problems = split(list(read_conversations(lines(STAR_LINE, broken, missing))))
    assert [(p.line, p.reason.split(":")[0]) for p in problems] == [(2, "role"), (3, "not a STAR record")]


@pytest.mark.skipif(not STAR.exists(), reason="shared STAR data not present")
def test_the_real_star_file_imports_without_problems() -> None:
    with STAR.open("rb") as f:
        conversations, problems = split(list(read_conversations(f)))
    assert problems == []
    assert len(conversations) == 4654
    assert sum(len(c.turns) for c in conversations) == 80840
    assert len({c.agent_id for c in conversations}) == STAR_AGENTS


# --- Zendesk ---------------------------------------------------------------------------------------------


def zendesk_items() -> list[Conversation | ImportProblem]:
    with ZENDESK.open("rb") as f:
        return list(read_conversations(f))


def test_zendesk_document_is_mapped() -> None:
    conversations, problems = split(zendesk_items())
    assert [c.conversation_id for c in conversations] == ["zd-1001", "zd-1002", "zd-1004"]
    refund, declined, parcel = conversations

    assert refund.channel is Channel.email
    assert refund.customer_id == "501"
    assert refund.agent_ids == ["9001"]
    assert refund.team == "77"
    assert refund.csat == 5
    assert refund.tags == ["billing", "refund"]
    assert [(t.role, t.author) for t in refund.turns] == [
        (Role.customer, "501"),
        (Role.agent, "9001"),
        (Role.customer, "501"),
    ]
    assert refund.turns[0].text.startswith("I was charged twice for order 48213. Reach me")  # plain_body wins
    assert "Internal" not in refund.model_dump_json()  # private notes are not part of the conversation
    assert refund.started_at == datetime(2024, 3, 4, 9, 12, tzinfo=UTC)
    assert refund.ended_at == datetime(2024, 3, 4, 11, 30, tzinfo=UTC)
    assert refund.metadata == {
        "subject": "Refund for double charge",
        "status": "solved",
        "priority": "high",
        "source": "zendesk",
        "private_comments": 1,
        "via_channel": "email",
    }

    assert declined.channel is Channel.chat
    assert declined.csat == 1
    assert declined.agent_ids == ["9002", "9003"]  # the assignee first, then whoever else answered

    assert parcel.channel is Channel.social
    assert parcel.csat is None  # "offered" is not a rating

    assert problems == [ImportProblem("ticket has no public comments", ticket=3)]


def test_zendesk_one_ticket_per_line_is_detected_too() -> None:
    tickets = json.loads(ZENDESK.read_text())["tickets"]
    items = list(read_conversations(lines(*tickets, b"oops")))
    conversations, problems = split(items)
    assert [c.conversation_id for c in conversations] == ["zd-1001", "zd-1002", "zd-1004"]
    assert [(p.line, p.reason.split(":")[0]) for p in problems] == [
        (3, "ticket has no public comments"),
        (5, "not JSON"),
    ]


def test_zendesk_document_broken_midway_keeps_what_came_before() -> None:
    text = ZENDESK.read_bytes()
    cut = text[: text.index(b'"id": 1002')]
    conversations, problems = split(list(read_conversations(io.BytesIO(cut))))
    assert [c.conversation_id for c in conversations] == ["zd-1001"]
    assert len(problems) == 1 and problems[0].ticket == 2
    assert problems[0].reason.startswith("invalid JSON after ticket 1")


# --- format detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b'\n  {\n "tickets": [', ImportFormat.zendesk),
        (b'{"id": 1, "requester_id": 2, "comments": []}\n', ImportFormat.zendesk),
        (json.dumps(STAR_LINE).encode(), ImportFormat.star),
        (b'\n{"conversation_id": "c", "turns": []}\n{"x"', ImportFormat.conversations),
    ],
)
def test_detect_format(head: bytes, fmt: ImportFormat) -> None:
    assert detect_format(head) is fmt


@pytest.mark.parametrize("head", [b"id,text\n1,hello\n", b'{"hello": "world"}\n', b"[]\n", b""])
def test_unknown_format_is_refused_up_front(head: bytes) -> None:
    with pytest.raises(UnknownFormat):
        read_conversations(io.BytesIO(head))


def test_a_first_line_longer_than_the_detection_window_is_still_detected() -> None:
    long_turns = [{"role": "customer", "text": "x" * 50_000}, {"role": "agent", "text": "y" * 50_000}]
    items = list(read_conversations(lines({"conversation_id": "long", "turns": long_turns})))
    assert [c.conversation_id for c in items if isinstance(c, Conversation)] == ["long"]


def test_an_explicit_format_skips_detection() -> None:
    items = list(read_conversations(lines(STAR_LINE), ImportFormat.conversations))
    [conversation] = items
    assert isinstance(conversation, Conversation)
    assert conversation.agent_ids == []  # read as a plain conversation: no synthetic agent
    assert set(conversation.metadata) == {"source", "labels"}
