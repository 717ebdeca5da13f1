"""The ledger: what became of every transaction a process recorded, per reporter.

One :class:`Account` per reporter name holds what that reporter delivered, what it dropped
(by reason), what is in flight to it and what it keeps for a later harvest; the
:class:`Ledger` adds what the recorder itself dropped (a full buffer, a record after
shutdown) and the evictions whose metrics wait for the next harvest. ``pending()``,
``flush()``, ``drop_totals()`` and the exit warning all read it, so that for every
reporter delivered + said dropped + pending = recorded holds exactly (STYLE habit 17).

The ledger keeps no lock of its own: the recorder's lock guards it, the lock the eviction
path already holds, so counting a drop costs no second lock.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Set, Tuple

from tasktrace.reporters.base import CommitGate, ExportResult

#: Drop reason for records evicted because the buffer was full.
REASON_BUFFER_FULL = "buffer_full"
#: Drop reason for records recorded after the recorder was shut down.
REASON_AFTER_SHUTDOWN = "after_shutdown"
#: What the exit warning says of transactions still pending when the exit budget ended.
REASON_SHUTDOWN_TIMEOUT = "shutdown_timeout"
#: The reason under which transactions are dropped when no reporter could be built.
REASON_NO_REPORTER = "no_reporter"

#: Per reporter name: (delivered, dropped by reason, pending).
View = Dict[str, Tuple[int, Dict[str, int], int]]


class Account:
    """What one reporter was given, by transactions (see :meth:`Ledger.settle`)."""

    __slots__ = ("delivered", "dropped", "in_flight", "kept", "name", "stores_metrics")

    def __init__(self, name: str, stores_metrics: bool) -> None:
        self.name = name
        #: The reporter delivers the exact metrics, which count evicted records too.
        self.stores_metrics = stores_metrics
        self.delivered = 0
        #: Dropped by reason ("<reporter>:<reason>").
        self.dropped: Dict[str, int] = {}
        #: Handed to the reporter in the export running now.
        self.in_flight = 0
        #: Held by the reporter for a later harvest (what its last answer said).
        self.kept = 0


class Ledger:
    """The accounts of one process's recorder; every method expects the caller to hold
    the recorder's lock, except where it says otherwise."""

    __slots__ = (
        "accounts",
        "drop_totals",
        "gate",
        "out_of_time",
        "pending_drops",
        "unharvested_evictions",
        "unharvested_evictions_lost",
    )

    def __init__(self) -> None:
        #: One account per reporter name (two reporters of one name share it).
        self.accounts: Dict[str, Account] = {}
        #: Dropped in this process so far, by reason.
        self.drop_totals: Dict[str, int] = {}
        #: Drops not yet handed to a reporter in a batch, by (app, reason).
        self.pending_drops: Dict[Tuple[str, str], int] = {}
        #: Records evicted from the full buffer whose metrics wait for the next harvest.
        self.unharvested_evictions = 0
        #: Of those, the ones evicted after the final harvest (no reporter takes them).
        self.unharvested_evictions_lost = 0
        #: A reporter gave up at shutdown for lack of time (said in the exit warning).
        self.out_of_time = False
        #: Closed by the exit warning, so that no write commits after it (see CommitGate).
        self.gate = CommitGate()

    # -- entering -----------------------------------------------------------------------

    def add_drop(self, app: str, reason: str, count: int) -> None:
        """Count ``count`` transactions of ``app`` dropped for ``reason``."""
        key = (app, reason)
        self.pending_drops[key] = self.pending_drops.get(key, 0) + count
        self.drop_totals[reason] = self.drop_totals.get(reason, 0) + count

    def take_drops(self) -> Dict[Tuple[str, str], int]:
        """The drops counted since the last call, by (app, reason), for the next batch."""
        drops, self.pending_drops = self.pending_drops, {}
        return drops

    def account(self, name: str, stores_metrics: bool) -> Account:
        """The account of the reporter called ``name``, made on first use (safe without
        the lock: a dict's ``setdefault`` is atomic)."""
        account = self.accounts.get(name)
        if account is None:
            account = self.accounts.setdefault(name, Account(name, stores_metrics))
        return account

    def settle(
        self,
        account: Account,
        result: ExportResult,
        handed: int,
        apps: Mapping[str, int],
        fallback_app: str,
        stopping: bool,
    ) -> int:
        """Enter what a reporter answered about the ``handed`` transactions given to it
        and those it kept from before; returns how many it dropped.

        The answer is made to add up: a reporter that says too little (a plugin that
        returns ``ExportResult(True)``) delivered the rest if it succeeded and dropped it
        if it failed; one that says too much is capped. Dropped transactions are counted
        under their apps as ``apps`` (the batch's records per app) spreads them.

        Args:
            account: the reporter's account (name "" when no reporter could be built).
            result: what the reporter answered.
            handed: transactions given to it in this export (0 for a flush or shutdown).
            apps: how many of the batch's records each app has (empty without a batch).
            fallback_app: the app drops go under when ``apps`` does not cover them.
            stopping: the recorder is shutting down (a retryable drop then means it
                ran out of time).
        """
        held = account.kept + handed
        kept = min(max(0, result.kept), held)
        dropped = min(max(0, result.dropped), held - kept)
        exported = min(max(0, result.exported), held - kept - dropped)
        rest = held - kept - dropped - exported
        if result.success:
            exported += rest
        else:
            dropped += rest
        account.in_flight = max(0, account.in_flight - handed)
        account.kept = kept
        account.delivered += exported
        name = account.name
        if not name:
            reason = REASON_NO_REPORTER
        else:
            why = result.reason or ("rejected" if result.success else "export_failed")
            reason = f"{name}:{why}"
        if dropped:
            account.dropped[reason] = account.dropped.get(reason, 0) + dropped
            self._add_drops_for(apps, reason, dropped, fallback_app)
        if stopping and dropped and result.retryable:
            self.out_of_time = True  # given up on at exit for lack of time
        if name:
            self.gate.settled(name)  # (after the ledger took what it committed)
        return dropped

    def _add_drops_for(
        self, apps: Mapping[str, int], reason: str, count: int, fallback_app: str
    ) -> None:
        """Attribute ``count`` dropped transactions to their apps (as ``apps`` spreads
        them; the rest under the first app, or ``fallback_app``)."""
        left = count
        if count >= sum(apps.values()):
            for app, n in apps.items():
                self.add_drop(app, reason, n)
                left -= n
        if left:
            # A partial refusal does not say which spans, and kept batches of earlier
            # harvests are not in this one: the count goes under the first app.
            app = next(iter(apps), fallback_app)
            self.add_drop(app, reason, left)

    # -- reading ------------------------------------------------------------------------

    def all_accounts(self) -> List[Account]:
        """The accounts, or an empty one for a recorder that has not harvested yet."""
        return list(self.accounts.values()) or [Account("", True)]

    def pending_of(self, account: Account, buffered: int) -> int:
        """Not yet delivered nor dropped for ``account``, with ``buffered`` records in
        the buffer."""
        pending = buffered + account.in_flight + account.kept
        if account.stores_metrics:
            pending += self.unharvested_evictions
        return pending

    def pending(self, buffered: int) -> int:
        """The most transactions pending for any one reporter."""
        return max(self.pending_of(a, buffered) for a in self.all_accounts())

    def undelivered(self, buffered: int, committed: Optional[Set[str]] = None) -> View:
        """Per reporter: (delivered, dropped by reason, pending) transactions; for any
        reporter, delivered + dropped + pending = recorded.

        Args:
            buffered: records in the buffer now.
            committed: Reporters that committed everything they held (in flight and
                kept) without the ledger having entered it yet (see CommitGate).
        """
        totals = self.drop_totals
        view: View = {}
        for account in self.all_accounts():
            written = 0
            if committed and account.name in committed:
                written = account.in_flight + account.kept
            dropped = dict(account.dropped)
            if account.stores_metrics:
                # Evicted after the final harvest: not even in the metrics.
                lost = self.unharvested_evictions_lost
                if lost:
                    dropped[REASON_BUFFER_FULL] = lost
            elif totals.get(REASON_BUFFER_FULL):
                dropped[REASON_BUFFER_FULL] = totals[REASON_BUFFER_FULL]
            if totals.get(REASON_AFTER_SHUTDOWN):
                dropped[REASON_AFTER_SHUTDOWN] = totals[REASON_AFTER_SHUTDOWN]
            view[account.name] = (
                account.delivered + written,
                dropped,
                self.pending_of(account, buffered) - written,
            )
        return view

    def exit_report(self, view: View, shutdown_timeout: float, pid: int) -> List[str]:
        """The lines the exit warning says for ``view``: nothing if all was delivered.

        Pending transactions count as not delivered within ``shutdown_timeout``. Safe
        without the lock once the gate is closed (nothing changes the accounts then but
        a late eviction, which only adds to ``drop_totals``).
        """
        lines: List[str] = []
        if self.out_of_time or any(pending for _, _, pending in view.values()):
            lines.append(
                f"tasktrace: delivery did not finish within shutdown_timeout={shutdown_timeout}s"
            )
        for name, (delivered, dropped, pending) in sorted(view.items()):
            if pending:
                dropped[REASON_SHUTDOWN_TIMEOUT] = dropped.get(REASON_SHUTDOWN_TIMEOUT, 0) + pending
            lost = sum(dropped.values())
            if not lost:
                continue
            details = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items()) if n)
            to = f"to {name}" if name else "to any reporter"
            lines.append(
                f"tasktrace: {lost} of {delivered + lost} transactions of process {pid} "
                f"were not delivered {to} ({details})"
            )
        evicted = self.drop_totals.get(REASON_BUFFER_FULL, 0)
        if evicted and any(a.stores_metrics for a in self.accounts.values()):
            lines.append(
                f"tasktrace: the buffer of process {pid} was full: {evicted} transactions "
                f"were kept only in the metrics, without their rows (buffer_full: {evicted})"
            )
        return lines
