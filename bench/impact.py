"""The measured impact matrix: which user operations stop when one lab service stops, next to haven's.

For each service of the real lab (haven.lab.lab: MariaDB, RabbitMQ, Keystone, Placement, Glance, the
Neutron stand-in, Nova's API, conductor, scheduler and both computes), the script:
1. boots the server a delete will remove, while everything runs;
2. SIGSTOPs that service: exactly its process group(s), found in the lab's own records (lab.json; the
   computes in the power wiring's status.json). A stopped process keeps its port open and answers
   nothing: the hung replica, the harder case for a client's timeouts;
3. runs every user operation at once, each in its own thread with its own short timeout, as a user
   would (openstacksdk with a token taken before the stop, and a fresh token request for
   ``token-issue``): works (within 3 s and 3x its baseline), slow (works, later), fails (an error, or no
   answer within its timeout);
4. SIGCONTs the service and checks the lab is whole again (a token, a server list, both computes up,
   an image list, a Placement query) before the next one.
A baseline pass (nothing stopped) runs first and again at the end. Then it prints the observed matrix,
haven's prediction (haven.topology.impact, every replica of the service lost, over the catalogue with
the lab's own declarations, LAB_DEPENDS_ON; ``--catalogue``: the plain catalogue) and the
disagreements. The raw observations are saved (``--save``) so that ``--compare FILE``
prints the comparison again against the current model without touching a lab.

Run: .venv/bin/python bench/impact.py [--folder LAB] [--save impact.json] [--only keystone,mariadb]
     .venv/bin/python bench/impact.py --compare impact.json [--catalogue] [--markdown]
The saved runs are tests/topology/impact_lab_matrix*.json (this script's of 2026-12-06, the drill's whole
run of 2026-12-07; test_impact_matrix.py holds the model to both). The measuring and the judging live
in the package (haven.drill.impact_run, haven.drill.impact_matrix), shared with `haven drill
controlplane-impact --cloud lab`; this script adds a lab of its own, the raw file and the printouts.
Without --folder it starts a lab (2 computes) in a temporary folder and stops it at the end. About
1 min per service plus the lab's start on a 2-core machine; run it once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from haven.cli.impact_drill import LabImpact
from haven.drill.impact_matrix import LAB_DEPENDS_ON, cells, observations, predictions
from haven.drill.impact_run import chosen, measure
from haven.lab import lab
from haven.lab.state import LabState, load_state


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def compare(
    raw: dict[str, Any], lab_declared: bool = True, markdown: bool = False
) -> list[tuple[str, str, str, str, str]]:
    """Print the observed matrix, the model's prediction and the disagreements (haven.drill.impact_matrix
    judges each cell, as the drill and tests/topology/test_impact_matrix.py do)."""
    depends_on = None if lab_declared else {}
    ops: list[str] = raw["operations"]
    width = max(len(o) for o in ops)
    judged = {(c.service, c.operation): c for c in cells(raw, depends_on)}
    model = "the lab as declared (LAB_DEPENDS_ON)" if lab_declared else "the plain catalogue"
    print(f"\nobserved, with haven's prediction from {model} where they differ")
    print("(works/slow agree with 'works' and 'degraded', fails with 'stops'; a fallback once Nova counts")
    print(" the service down, e.g. nova-compute's server delete, is expected to fail when sent at once;")
    print(" Keystone's 'degraded' through the lab's per-worker token caches may also fail by a timeout):")
    if markdown:
        print("| stopped | " + " | ".join(ops) + " |")
        print("|---" * (len(ops) + 1) + "|")
    else:
        print("service".ljust(16) + " ".join(o[:14].ljust(14) for o in ops))
    for service in raw["services"]:
        shown = []
        for op in ops:
            c = judged[(service, op)]
            mark = f"{c.seen} {c.seconds:.1f}s" if markdown else c.seen[0].upper()
            if not c.agrees:
                mark = f"**{mark}** (pred. {c.predicted})" if markdown else f"{mark} (pred {c.predicted})"
            shown.append(mark if markdown else mark.ljust(14))
        print(
            f"| {service} | " + " | ".join(shown) + " |" if markdown else service.ljust(16) + " ".join(shown)
        )
    if not markdown:
        print(f"\nhaven's prediction ({model}): stops / degraded / works")
        for service in raw["services"]:
            if not service.startswith("baseline"):
                pred = predictions(service, depends_on)
                print(service.ljust(16) + " ".join(pred[op].effect.value.ljust(14) for op in ops))
    wrong = [c for c in judged.values() if not c.agrees]
    print(f"\n{len(wrong)} disagreement(s):")
    for c in wrong:
        print(
            f"  {c.service:16} {c.operation:{width}} predicted {c.predicted:8} observed {c.seen:6} {c.detail}"
        )
    return [(c.service, c.operation, c.predicted, c.seen, c.detail) for c in wrong]


@contextlib.contextmanager
def a_lab(folder: Path | None) -> Iterator[tuple[LabState, Path]]:
    if folder is not None:
        state = load_state(folder)
        if state is None:
            raise SystemExit(f"no lab in {folder}")
        yield state, folder
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-impact-"))
    try:
        yield lab.up(own, 2, progress=lambda m: say(f"lab: {m}")), own
    finally:
        lab.down(own)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="a running lab (haven lab up); default: start one")
    parser.add_argument("--save", type=Path, default=Path("impact.json"), help="the raw observations")
    parser.add_argument("--only", default="", help="comma-separated services (default: all)")
    parser.add_argument(
        "--compare",
        type=Path,
        help="saved observations (--save, or the drill's --json) compared again; no lab",
    )
    parser.add_argument("--catalogue", action="store_true", help="compare with the catalogue, not the lab's")
    parser.add_argument("--markdown", action="store_true", help="the matrix as a Markdown table")
    args = parser.parse_args()
    # Started in the background, Python ignores SIGINT: a stop must still continue what it stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.compare:
        compare(observations(json.loads(args.compare.read_text())), not args.catalogue, args.markdown)
        return 0
    try:
        processes, operations = chosen([s for s in args.only.split(",") if s], [])
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    started = time.monotonic()
    with a_lab(args.folder) as (state, _folder):
        say(f"lab ready ({state.up_in_s} s to start); machine load {os.getloadavg()}")
        raw = measure(LabImpact(state), processes, operations, say=say)
    raw["depends_on"] = {k: list(v) for k, v in LAB_DEPENDS_ON.items()}
    raw["seconds"] = round(time.monotonic() - started, 1)
    args.save.write_text(json.dumps(raw, indent=2) + "\n")
    say(f"saved {args.save} ({raw['seconds']} s in all)")
    compare(raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
