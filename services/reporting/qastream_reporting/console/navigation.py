"""Which pages exist and which roles see them: the one place the console's role rules live.

The APIs enforce the same rules on every call; this only decides what the navigation offers and which
page shells are served, so a role never sees a page whose every call would be refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from qastream_shared.auth import Principal
from qastream_shared.events import Role

A, Q, R, T, G, P = Role.admin, Role.qa_lead, Role.reviewer, Role.team_lead, Role.agent, Role.platform


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    label: str
    roles: frozenset[Role]
    in_nav: bool = True


PAGES = {
    p.name: p
    for p in (
        Page("dashboard", "/dashboard", "Dashboard", frozenset({A, Q, T, P})),
        Page("workspace", "/workspace", "Review queue", frozenset({A, Q, R})),
        Page("agent", "/agents/{agent_id}", "My reviews", frozenset({A, Q, T, G, P}), in_nav=False),
        Page("review", "/reviews/{review_id}", "Review", frozenset(Role), in_nav=False),
        Page("disputes", "/disputes", "Disputes", frozenset({A, Q, R, T, G})),
        Page("calibration", "/calibration", "Calibration", frozenset({A, Q, R})),
        Page("coaching", "/coaching", "Coaching", frozenset({A, Q, T, G})),
        Page("plans", "/plans", "Sampling plans", frozenset({A, Q})),
    )
}


def home(principal: Principal) -> str:
    """Where a role lands after signing in: the page it works from every day."""
    if principal.role is Role.agent and principal.agent_id:
        return f"/agents/{principal.agent_id}"
    if principal.role is Role.reviewer:
        return "/workspace"
    return "/dashboard"


def nav(principal: Principal) -> list[dict[str, str]]:
    items = []
    if principal.role is Role.agent and principal.agent_id:
        items.append({"name": "agent", "path": f"/agents/{principal.agent_id}", "label": "My reviews"})
    for p in PAGES.values():
        if p.in_nav and principal.role in p.roles:
            items.append({"name": p.name, "path": p.path, "label": p.label})
    return items


def may_open(principal: Principal, page: str) -> bool:
    return principal.role in PAGES[page].roles
