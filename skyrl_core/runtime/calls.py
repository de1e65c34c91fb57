"""Calling Ray actors from the driver without hanging when one of them dies.

Workers of one torch.distributed group block in collectives until every peer joins, so
``ray.get`` on all of them would wait forever once one peer is gone. ``wait_all`` polls
the calls and raises as soon as any one fails, naming the actor, its node and what died.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from skyrl_core.errors import SkyrlError


class WorkerDiedError(SkyrlError):
    """A Ray actor (training worker or inference engine) died or its call failed."""

    exit_code = 3


def import_ray() -> Any:
    """``import ray`` with an error that says how to install it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is installed in CI
        raise SkyrlError(
            "[runtime] mode = 'ray' (or the fsdp2 strategy) needs Ray: `pip install 'skyrl-core[ray]'` "
            "(or `pip install ray`)"
        ) from exc
    return ray


def wait_all(
    refs: Sequence[Any],
    names: Sequence[str],
    *,
    what: str,
    on_failure: Callable[[], None] | None = None,
    poll_s: float = 1.0,
) -> list[Any]:
    """``ray.get`` every call in ``refs``, failing fast.

    Args:
        refs: object refs of actor calls, one per actor.
        names: a label per ref (e.g. ``"fsdp2 worker rank 1"``), used in errors.
        what: what the calls do (``"train_step"``), used in errors.
        on_failure: called once before raising (e.g. to kill the surviving peers, which
            may be stuck in a collective waiting for the dead one).
        poll_s: how often to check; also lets Ctrl-C through.

    Returns:
        The results in the order of ``refs``.

    Raises:
        WorkerDiedError: an actor died (crash, out-of-memory kill, node loss).
        Exception: the worker's own exception when its method raised (a ``SkyrlError``
            is re-raised as itself so the CLI prints it plainly).
    """
    ray = import_ray()
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=poll_s)
        for ref in ready:
            i = index[ref]
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                if on_failure is not None:
                    on_failure()
                raise _died(names[i], what, exc) from exc
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                # A worker whose collective lost its peer raises (gloo: "Connection closed by peer")
                # about when that peer dies; the death is the cause to report, so look for one first.
                dead = None if isinstance(cause, SkyrlError) else _dead_peer(ray, pending, index, DEATH_GRACE_S)
                if on_failure is not None:
                    on_failure()
                if dead is not None:
                    raise _died(names[dead[0]], what, dead[1]) from dead[1]
                if isinstance(cause, SkyrlError):
                    raise cause from None
                raise WorkerDiedError(f"{names[i]} failed during {what}:\n{exc}") from exc
    return results


#: How long ``wait_all`` waits for the other calls after one raised, to find a peer that died (the
#: usual cause of a collective's error); only spent on the failure path.
DEATH_GRACE_S = 3.0


def _dead_peer(ray: Any, pending: Sequence[Any], index: dict[Any, int], grace_s: float) -> tuple[int, Any] | None:
    """The index and error of a call in ``pending`` whose actor died, waiting up to ``grace_s``."""
    if not pending:
        return None
    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=grace_s)
    for ref in ready:
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            return index[ref], exc
        except Exception:
            continue
    return None


def _died(name: str, what: str, exc: BaseException) -> WorkerDiedError:
    return WorkerDiedError(
        f"{name} died during {what}: {_first_line(exc)}. The other workers of its group cannot "
        "go on without it, so they were stopped. Look for an out-of-memory kill or a crash in the "
        "Ray logs (/tmp/ray/session_latest/logs on its node, or `ray logs`), then restart: the run "
        "resumes from its last checkpoint."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    detail = " ".join(lines[:3]) if lines else type(exc).__name__
    return detail if len(detail) < 600 else detail[:600] + "..."


def node_ip() -> str:
    """This node's IP address as Ray sees it (falls back to the hostname's address)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:
        pass
    return socket.gethostbyname(socket.gethostname())


def free_port() -> int:
    """A TCP port that is free on this node right now (for a process-group rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def where() -> dict[str, Any]:
    """Node IP and process id of the calling process (for error messages)."""
    import os

    return {"ip": node_ip(), "pid": os.getpid()}


class ActorGroup:
    """Ray actors of one kind (training workers, inference engines) called together.

    A failure of any call stops the whole group (its peers may be blocked in a
    collective waiting for the failed one), and every later use raises at once with the
    original reason instead of hanging.

    Args:
        actors: the actor handles.
        names: one label per actor, e.g. ``"fsdp2 worker rank 0"``.
        label: the group as a whole, e.g. ``"the fsdp2 workers"``.
    """

    def __init__(self, actors: Sequence[Any], names: Sequence[str], label: str) -> None:
        self.actors = list(actors)
        self.names = list(names)
        self.label = label
        self.broken: str | None = None
        self._partners: list[ActorGroup] = []

    def __len__(self) -> int:
        return len(self.actors)

    def link(self, other: ActorGroup) -> None:
        """Stop ``other`` too when this group fails (and vice versa): groups that share a
        collective (trainer rank 0 and the engines during a weight broadcast)."""
        if other not in self._partners:
            self._partners.append(other)
        if self not in other._partners:
            other._partners.append(self)

    def check(self) -> None:
        """Raise if the group was stopped by an earlier failure."""
        if self.broken is not None:
            raise WorkerDiedError(
                f"{self.label} were stopped after an earlier failure ({self.broken}); restart the run (it resumes "
                "from its last checkpoint)."
            )

    def submit(self, method: str, *args: Any, per_actor: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        """Start ``method`` on every actor (``per_actor[i]`` overrides ``args`` for actor ``i``);
        return the object refs."""
        self.check()
        refs = []
        for i, actor in enumerate(self.actors):
            call_args = per_actor[i] if per_actor is not None else args
            refs.append(getattr(actor, method).remote(*call_args))
        return refs

    def call(self, method: str, *args: Any, per_actor: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        """``submit`` then wait for every result (failing fast, see ``wait_all``)."""
        return self.wait(self.submit(method, *args, per_actor=per_actor), what=method)

    def wait(
        self, refs: Sequence[Any], *, what: str, others: Sequence[tuple[ActorGroup, Sequence[Any]]] = ()
    ) -> list[Any]:
        """Wait for this group's ``refs`` and, together, other groups' refs; return this group's results."""
        all_refs = list(refs)
        names = list(self.names[: len(refs)])
        for group, group_refs in others:
            all_refs += list(group_refs)
            names += list(group.names[: len(group_refs)])

        def fail() -> None:
            self.stop("a peer failed")
            for group, _ in others:
                group.stop("a peer failed")

        try:
            results = wait_all(all_refs, names, what=what, on_failure=fail)
        except Exception as exc:
            reason = f"{what}: {type(exc).__name__}"
            self.broken = reason
            for group, _ in others:
                group.broken = reason
            raise
        return results[: len(refs)]

    def stop(self, reason: str) -> None:
        """Kill every actor of the group (and of linked groups); later calls raise."""
        if self.broken is None:
            self.broken = reason
        ray = import_ray()
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        for partner in list(self._partners):
            if partner.broken is None:
                partner.stop(reason)


def plugin_table(registry: Any) -> list[tuple[str, str, str]]:
    """``(distribution, version, status)`` of every plugin a registry saw, sorted."""
    return sorted((p.distribution, p.version, p.status) for p in registry.plugins)


def check_same_plugins(driver: list[tuple[str, str, str]], workers: dict[str, list[tuple[str, str, str]]]) -> None:
    """Raise a ``SkyrlError`` when a worker's plugins differ from the driver's.

    Args:
        driver: ``plugin_table`` of the driver's registry.
        workers: ``plugin_table`` of each worker's registry, by worker label.
    """
    problems = []
    mine = {d: (v, s) for d, v, s in driver}
    for label, table in workers.items():
        theirs = {d: (v, s) for d, v, s in table}
        for dist in sorted(set(mine) | set(theirs)):
            a, b = mine.get(dist), theirs.get(dist)
            if a == b:
                continue
            have = f"{b[0]} ({b[1]})" if b else "not installed"
            want = f"{a[0]} ({a[1]})" if a else "not installed"
            problems.append(f"{label} sees {dist} {have}, the driver {want}")
    if problems:
        raise SkyrlError(
            "Ray workers must see the same skyrl plugins as the driver (only component names cross processes):\n  - "
            + "\n  - ".join(problems)
            + "\nInstall the same versions on every node (and the same SKYRL_LOAD_PLUGINS), then restart."
        )


class RayPending:
    """Calls on the actors of a group as one ``Pending`` operation (``skyrl_core.protocols.weights``).

    ``result`` waits with the group's fail-fast ``wait``; ``cancel`` stops the group (its
    actors may be blocked in a collective whose other side failed). ``reduce`` turns the
    per-actor results into the operation's result (default: the list).
    """

    def __init__(
        self, group: ActorGroup, refs: Sequence[Any], what: str, reduce: Callable[[list[Any]], Any] | None = None
    ) -> None:
        self.group = group
        self.refs = list(refs)
        self.what = what
        self.reduce = reduce

    def done(self) -> bool:
        ray = import_ray()
        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        return len(ready) == len(self.refs)

    def result(self, timeout: float | None = None) -> Any:
        results = self.group.wait(self.refs, what=self.what)
        return self.reduce(results) if self.reduce is not None else results

    def cancel(self) -> bool:
        self.group.stop(f"a peer failed during {self.what}")
        return True
