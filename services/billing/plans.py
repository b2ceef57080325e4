"""Plans and their entitlements (typed keys, like Supabase's). The numbers are defaults that
configuration may override (config/plans.yaml, read once by the billing process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config" / "plans.yaml"


def load_plans(path: Path = CONFIG) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    plans = data["plans"]
    for name, plan in plans.items():
        if "max_projects" not in plan:
            raise ValueError(f"plan {name}: missing max_projects")
    return dict(plans)


def entitlements(plans: dict[str, dict[str, Any]], plan: str) -> dict[str, Any]:
    return {"plan": plan, **plans[plan]}
