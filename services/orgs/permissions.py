"""The organization permission matrix: written once, enforced in one place (`authorize`),
and rendered into docs/permissions.md by `render_markdown` (a test keeps the doc true).

Imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("owner", "admin", "member", "read_only")


@dataclass(frozen=True)
class Action:
    name: str
    roles: frozenset[str]
    description: str


def _a(name: str, roles: str, description: str) -> Action:
    return Action(name, frozenset(roles.split(",")), description)


MATRIX: tuple[Action, ...] = (
    _a("org.read", "owner,admin,member,read_only", "See the organization and its settings"),
    _a("org.update", "owner,admin", "Rename the organization, change billing email and default region"),
    _a("org.delete", "owner", "Delete the organization (refused while it has projects)"),
    _a("org.leave", "owner,admin,member,read_only", "Leave the organization (not the last owner)"),
    _a("members.read", "owner,admin,member,read_only", "List members and their roles"),
    _a("members.invite", "owner,admin", "Invite people by email with the admin or member role"),
    _a("members.change_role", "owner,admin", "Change a member's role between admin and member"),
    _a("members.remove", "owner,admin", "Remove an admin or member"),
    _a("members.manage_owners", "owner", "Invite, promote to, demote from or remove the owner role"),
    _a("org.transfer_ownership", "owner", "Make another member an owner and step down to admin"),
    _a("invitations.read", "owner,admin", "List pending and past invitations"),
    _a("invitations.manage", "owner,admin", "Resend or revoke invitations"),
    _a("audit.read", "owner,admin", "Read the organization's audit log"),
    _a("projects.read", "owner,admin,member,read_only", "See projects, their status, settings and anon key"),
    _a("projects.create", "owner,admin", "Create projects"),
    _a("projects.manage", "owner,admin", "Pause, restore and change project settings"),
    _a("projects.delete", "owner,admin", "Delete projects"),
    _a("projects.secrets", "owner,admin", "Reveal the service_role key, rotate the JWT secret and read secret auth settings (smtp_pass, OAuth and hook secrets; masked for other roles)"),
    _a("database.read", "owner,admin,member,read_only", "Browse the project's data, read-only SQL, migrations history, types, advisors, logs"),
    _a("database.write", "owner,admin,member", "Run any SQL and apply migrations as the project's database owner"),
    _a("billing.read", "owner,admin,member,read_only", "See the plan, its quotas and limits, and preview a plan change"),
    _a("billing.invoices", "owner,admin", "See invoices and their amounts"),
    _a("billing.manage", "owner", "Change the plan (upgrade, downgrade) and the spend cap"),
    _a("usage.read", "owner,admin,member,read_only", "See usage per metric and period, usage alerts and project budgets"),
    _a("usage.budgets", "owner,admin", "Set and remove usage budgets on projects (alerts at 50/80/100 %)"),
)

BY_NAME = {a.name: a for a in MATRIX}


class NotAllowed(Exception):
    pass


def allowed(role: str | None, action: str) -> bool:
    if action not in BY_NAME:
        raise KeyError(f"unknown action {action}")
    return role is not None and role in BY_NAME[action].roles


def authorize(role: str, action: str) -> None:
    if not allowed(role, action):
        desc = BY_NAME[action].description.lower()
        raise NotAllowed(f"your role ({role}) does not allow this: {desc}")


def render_markdown() -> str:
    lines = [
        "# Organization roles and permissions",
        "",
        "Generated from `services/orgs/permissions.py` (the table the orgs service enforces);",
        "do not edit by hand: run `python -m services.orgs.permissions > docs/permissions.md`.",
        "",
        "| action | " + " | ".join(ROLES) + " | what it allows |",
        "|---|" + "---|" * len(ROLES) + "---|",
    ]
    for a in MATRIX:
        marks = " | ".join("yes" if r in a.roles else "no" for r in ROLES)
        lines.append(f"| `{a.name}` | {marks} | {a.description} |")
    lines += [
        "",
        "Rules on top of the table: an organization always keeps at least one owner (the last",
        "owner cannot leave, be removed or be demoted); only owners may touch the owner role;",
        "non-members get 404 for every organization route, whatever the action. `read_only`",
        "(Supabase's Read-only role) may look (organization, members, projects, usage, the",
        "project's data and read-only SQL) and change nothing.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
