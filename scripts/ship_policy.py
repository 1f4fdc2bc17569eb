#!/usr/bin/env python
"""Ship a searched policy with LAW: copy it into law/policies/ under a name, with its provenance.

The copy drops what only made sense on the machine that searched it (the data
folder, output folders), so `law apply --policy NAME --data-root DIR` runs it on
anyone's copy of the data. `law policies` lists what is shipped.

    python scripts/ship_policy.py --name noisy-cifar10-cpu --policy runs/.../policy.pt \\
        --description "..." --measured "..." --use "--data-root DIR"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.io import atomic_save, atomic_write_json, code_revision  # noqa: E402
from law.policy_file import SHIPPED, load_policy, shipped_policies  # noqa: E402

MACHINE_FIELDS = {"DataConfig": ("data_root",), "SearchConfig": ("output_dir", "run_name", "resume", "address")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the name users pass to --policy")
    parser.add_argument("--policy", required=True, help="policy file written by a search")
    parser.add_argument("--description", required=True, help="what task it was searched for")
    parser.add_argument("--measured", required=True, help="what it gained, with the command that measured it")
    parser.add_argument("--use", default="", help="flags a user must add (e.g. --data-root DIR)")
    args = parser.parse_args(argv)

    policy = load_policy(args.policy)
    for section, fields in MACHINE_FIELDS.items():
        for name in fields:
            if section in policy["config"] and name in policy["config"][section]:
                policy["config"][section][name] = ""
    search = policy["config"]["SearchConfig"]
    results = Path(args.policy).parent / "results.json"  # the search's own record, when beside it
    revision = json.loads(results.read_text())["environment"]["code_revision"] if results.is_file() \
        else code_revision()
    file = f"{args.name}.pt"
    atomic_save(policy, SHIPPED / file)
    index = shipped_policies()
    selection = policy.get("selection") or {}
    searched = (f"not searched: a hand-set schedule ({selection['hand_set']}); {json.dumps(selection)}"
                if "hand_set" in selection else
                f"{search['agent']} search, {search['episodes']} episodes, seed {search['seed']}; "
                f"kept: {json.dumps(selection)}")
    index[args.name] = {"file": file, "description": args.description, "measured": args.measured,
                        "use": args.use, "searched": searched, "code_revision": revision}
    atomic_write_json(index, SHIPPED / "index.json")
    print(f"shipped {args.name} -> {SHIPPED / file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
