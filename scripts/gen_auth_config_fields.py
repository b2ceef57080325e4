"""Regenerates services/projects/auth_config_fields.py from the Management API document.

Usage: python scripts/gen_auth_config_fields.py [path to supabase-management-api-v1.json]
(default: ../shared/reference/ beside the repository).
"""

import json
import pprint
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "reference" / "supabase-management-api-v1.json"
S = json.loads(spec.read_text())["components"]["schemas"]
resp, upd = S["AuthConfigResponse"]["properties"], S["UpdateAuthConfigBody"]["properties"]
fields = {}
for name in sorted(resp):
    u = upd.get(name)
    f = {"type": resp[name].get("type"), "nullable": bool(resp[name].get("nullable"))}
    for k in ("enum", "minimum", "maximum", "pattern", "format", "minLength", "maxLength"):
        if k in (u or resp[name]):
            f[k] = (u or resp[name])[k]
    f["updatable"] = u is not None
    fields[name] = f
out = ROOT / "services" / "projects" / "auth_config_fields.py"
head = out.read_text().split("FIELDS: dict[str, dict[str, Any]] = ")[0]
out.write_text(head + "FIELDS: dict[str, dict[str, Any]] = " + pprint.pformat(fields, width=110, sort_dicts=True) + "\n")
print(f"wrote {out} ({len(fields)} fields)")
