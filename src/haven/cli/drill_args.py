"""`haven drill`'s arguments: every drill's name and each drill's own options, without importing a drill.

Called by haven.cli.main, which builds the ``drill`` parser from these for every `haven drill ...` (its
``--help`` and `haven drill fault --list` included) and then imports only the module that runs the drill
chosen. Those modules import openstacksdk, SQLAlchemy, the lab and the stateful clusters: about 1.7 s of
CPU that `haven drill --help` paid before. The names repeat their own modules' (haven.drill.scenarios,
haven.stateful.drills, ...), as haven.cli.main's COMMANDS repeats each command's help, so that listing
them imports nothing; tests/cli/test_drill_start.py holds the two equal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haven.drill.nova_view import JUDGE_WAIT_S

# haven.drill.scenarios.SCENARIOS, in its order: the drills of the simulated cloud in virtual time
SIMULATED = (
    "host-power-loss",
    "host-hang",
    "rack-loss",
    "management-partition",
    "observer-partition",
    "nova-compute-crash",
    "no-capacity",
    "reserved-host",
    "vm-crash",
    "vm-crash-loop",
    "guest-watchdog",
    "agent-down",
    "staggered-partition",
    "false-external-report",
    "lost-evacuate-answer",
    "control-plane-outage",
    "nova-clock-skew",
)
LEADER_LOSS = "leader-loss"  # haven.drill.leader_loss.NAME
GALERA = ("galera-node-loss", "galera-full-outage")  # haven.stateful.drills.SCENARIOS
RABBITMQ = ("rabbitmq-node-loss", "rabbitmq-partition")  # haven.stateful.rabbitmq_drills.SCENARIOS
BACKUP_DRILLS = ("backup-restore",)  # haven.cli.backups.DRILLS
FAULT = "fault"  # the fault catalogue on the lab (haven.cli.fault_drill)
IMPACT = "controlplane-impact"  # the impact matrix measured on the lab (haven.cli.impact_drill)
NAMES = (*SIMULATED, LEADER_LOSS, *GALERA, *RABBITMQ, *BACKUP_DRILLS, FAULT, IMPACT)

GALERA_NODES = ("g1", "g2", "g3")
RABBITMQ_NODES = ("rabbit-1", "rabbit-2", "rabbit-3")


def add_options(drill: argparse.ArgumentParser) -> None:
    """Each drill's own options, a group per drill, after the options every drill takes."""
    _cloud_drill(drill)
    _galera(drill)
    _rabbitmq(drill)
    _fault(drill)
    _impact(drill)


def _cloud_drill(drill: argparse.ArgumentParser) -> None:
    """haven.cli.cloud_drill's: a drill on a real cloud (``--cloud`` itself is the drill parser's)."""
    group = drill.add_argument_group("on a real cloud (--cloud NAME)")
    group.add_argument("--host", help="the compute host to fail (default: the first healthy one with a BMC)")
    group.add_argument("--flavor", help="flavor of the drill's servers (default on the lab: its own)")
    group.add_argument("--image", help="image id of the drill's servers (default on the lab: its own)")
    group.add_argument(
        "--lab-folder",
        type=Path,
        help="the running lab's folder, for --cloud lab (default: `haven lab up`'s)",
    )
    group.add_argument(
        "--give-up", type=float, default=300.0, metavar="SECONDS",
        help="stop waiting for the recovery, and for the host's return, after this long (default 300)",
    )  # fmt: skip
    group.add_argument(
        "--judge-wait", type=float, default=JUDGE_WAIT_S, metavar="SECONDS",
        help="once haven's recovery is over, how long the judge waits for Nova to show every HA VM "
        f"ACTIVE, no task, running, on another host (default {JUDGE_WAIT_S:g})",
    )  # fmt: skip


def _galera(drill: argparse.ArgumentParser) -> None:
    node_loss, full_outage = GALERA
    group = drill.add_argument_group(f"Galera drills ({', '.join(GALERA)})")
    group.add_argument(
        "--galera-node",
        choices=GALERA_NODES,
        default=None,
        help=f"{node_loss}: the node killed (default g3); {full_outage}: the node that goes down first "
        "and misses the last writes (default g1)",
    )


def _rabbitmq(drill: argparse.ArgumentParser) -> None:
    group = drill.add_argument_group(f"RabbitMQ drills ({', '.join(RABBITMQ)})")
    group.add_argument(
        "--rabbitmq-node",
        choices=RABBITMQ_NODES,
        default="rabbit-3",
        help="the node killed (node loss) or cut off from the others (partition); default rabbit-3",
    )
    group.add_argument(
        "--rabbitmq-cut-from",
        choices=RABBITMQ_NODES,
        default=None,
        help="rabbitmq-partition: cut only the link between --rabbitmq-node and this node (default: cut it "
        "off from every other node)",
    )
    group.add_argument(
        "--rabbitmq-split-all",
        action="store_true",
        help="rabbitmq-partition: cut every node off from every other (three sides of one node each)",
    )


def _fault(drill: argparse.ArgumentParser) -> None:
    """`haven drill fault`'s own: the fault's NAME (a second positional) and its options."""
    drill.add_argument(
        "fault_name", nargs="?", metavar="NAME",
        help=f"with `{FAULT}`: the fault to inject on the lab (`--list` names them); several: a,b,c",
    )  # fmt: skip
    group = drill.add_argument_group(f"the fault catalogue (`haven drill {FAULT} NAME --cloud lab`)")
    group.add_argument("--list", action="store_true", help="print the fault catalogue and exit")
    group.add_argument(
        "--controlplane", action="store_true",
        help="also run haven's control-plane reconciler over the lab, observe-only (SQL, AMQP and Keystone "
        "probes as evidence)",
    )  # fmt: skip
    group.add_argument("--boot-timeout", type=float, default=40.0, metavar="SECONDS",
                       help="the canary's boot (default 40)")  # fmt: skip
    group.add_argument("--request-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="each OpenStack request of the canary (default 10)")  # fmt: skip
    group.add_argument("--whole-timeout", type=float, default=240.0, metavar="SECONDS",
                       help="the lab proven whole, before and after (default 240)")  # fmt: skip
    group.add_argument(
        "--repeat", type=int, default=1, metavar="N",
        help="N rounds, each injecting every fault named once; with several faults each round in its own "
        "order, shuffled by --seed (default 1)",
    )  # fmt: skip


def _impact(drill: argparse.ArgumentParser) -> None:
    group = drill.add_argument_group(f"the impact matrix (`haven drill {IMPACT} --cloud lab`)")
    group.add_argument(
        "--only", default="", metavar="SERVICE[,SERVICE...]",
        help="stop only these services (default: every lab service, about 25 minutes)",
    )  # fmt: skip
    group.add_argument(
        "--operations", default="", metavar="OP[,OP...]",
        help="run only these user operations (default: all; e.g. token-issue,image-list)",
    )  # fmt: skip
    group.add_argument("--operation-timeout", type=float, default=20.0, metavar="SECONDS",
                       help="one request of an operation (default 20); a boot is given the longer of "
                       "60 s and twice this to reach ACTIVE, a delete the longer of 45 s and 1.5 times "
                       "this to finish")  # fmt: skip
