"""Who left the job: the rendezvous' membership, compared from one cycle to the next.

A node that vanishes (kernel panic, power, a reclaimed spot instance) cannot say so,
and torch records nothing about it: the survivors' collectives fail, they restart,
and the next round simply completes without it. The dynamic rendezvous' state names
every node of a round (``participants``: torch's node descriptor
``<host>_<pid>_<local id>`` and its rank), so the agent keeps the membership of the
last cycle it saw and, after each completed rendezvous, the new round's rank 0
lists who is no longer there, with the rank each had: enough for the exporter to
export the parts those nodes could not, in the cycle they died in.

A node that *is* told to stop (SIGTERM: the notice Kubernetes, Slurm and spot
instances give) says so before it goes: it writes the signal under a key of the
rendezvous' store, which the survivors read when they list who left. torch keeps
that store alive across rounds (the round's own keys are under a prefix of it).

Everything here reads torch's private state (``_state_holder``, ``_store``,
``_this_node``) through ``getattr`` and gives up quietly (no membership: nobody is
named) where it is missing: the rendezvous backends that have no such state (static,
etcd v1) do not support a node leaving anyway.
"""

import contextlib
import threading
from typing import Any

_STORE_PREFIX = "torchelastic_otel/left/"
# A store that cannot be reached must not hold the agent up: its signal handling has
# a grace period to keep.
_STORE_WAIT_S = 1.0

_members: dict[str, dict[str, tuple[str, int]]] = {}
"""Per run id: the last cycle's nodes (node id -> (host, rank)), as this agent saw them."""
_rounds: dict[str, int] = {}


def participants(handler: Any) -> dict[str, tuple[str, int]] | None:
    """The round's nodes as torch's dynamic rendezvous holds them: id -> (host, rank)."""
    state = getattr(getattr(handler, "_state_holder", None), "state", None)
    members = getattr(state, "participants", None)
    if not isinstance(members, dict):
        return None
    return {
        repr(node): (str(getattr(node, "addr", repr(node))), rank)
        for node, rank in members.items()
        if isinstance(rank, int) and not isinstance(rank, bool)
    }


def left_since_last_cycle(
    handler: Any, run_id: str, round_: int | None, rank: int
) -> dict[str, Any] | None:
    """Event metadata naming the nodes that left since this agent's last cycle.

    Only for the new round's rank 0 (one node speaks for the job), and only when
    this agent was in the cycle before. Always remembers the new membership.

    Example: the metadata of rank 0 after node ``h3_77_0`` (rank 2) vanished::

        {"lost.nodes": ["h3_77_0"], "lost.hosts": ["h3"], "lost.ranks": [2],
         "lost.signals": [""], "lost.round": 4}
    """
    now = participants(handler)
    before = _members.get(run_id)
    previous_round = _rounds.get(run_id)
    if now is None:
        return None
    _members[run_id] = now
    if round_ is not None:
        _rounds[run_id] = round_
    if rank != 0 or not before:
        return None
    gone = sorted((node for node in before if node not in now), key=lambda n: before[n][1])
    if not gone:
        return None
    metadata: dict[str, Any] = {
        "lost.nodes": gone,
        "lost.hosts": [before[node][0] for node in gone],
        "lost.ranks": [before[node][1] for node in gone],
        "lost.signals": [_signal_left(handler, run_id, node) for node in gone],
    }
    if previous_round is not None:
        metadata["lost.round"] = previous_round
    return metadata


def this_node(handler: Any) -> str | None:
    """This agent's node id in the rendezvous (torch's ``_this_node``)."""
    node = getattr(handler, "_this_node", None)
    return repr(node) if node is not None else None


def say_leaving(handler: Any, run_id: str, signal: str) -> None:
    """Tell the survivors, through the store, that this node leaves on ``signal``.

    Bounded: the store's client blocks while its server is away, so the write runs
    on a daemon thread that is given :data:`_STORE_WAIT_S`.
    """
    store = getattr(handler, "_store", None)
    node = this_node(handler)
    if store is None or node is None:
        return

    def write() -> None:
        # The store gone: the survivors will infer that the node left.
        with contextlib.suppress(Exception):
            store.set(_key(run_id, node), signal)

    writer = threading.Thread(target=write, name="torchelastic-otel-leaving", daemon=True)
    writer.start()
    writer.join(_STORE_WAIT_S)


def _signal_left(handler: Any, run_id: str, node: str) -> str:
    store = getattr(handler, "_store", None)
    if store is None:
        return ""
    try:
        key = _key(run_id, node)
        if not store.check([key]):
            return ""
        value = store.get(key)
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    except Exception:  # noqa: BLE001 -- unreadable: the node is named as vanished
        return ""


def _key(run_id: str, node: str) -> str:
    return f"{_STORE_PREFIX}{run_id}/{node}"
