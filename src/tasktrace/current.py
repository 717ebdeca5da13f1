"""Functions acting on the current transaction (the one active in this thread or asyncio
task): ``current_transaction``, ``add_custom_attribute``, ``notice_error``,
``set_transaction_name`` and ``ignore_transaction``. Each is a no-op outside a transaction.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from tasktrace._scopes import current_node
from tasktrace.transaction import ExcInfo, Transaction


def current_transaction() -> Optional[Transaction]:
    """The transaction active in this thread / asyncio task, or None."""
    node = current_node()
    return None if node is None else node.txn


def add_custom_attribute(key: str, value: Any) -> bool:
    """Attach an attribute to the current transaction; returns whether it was kept."""
    txn = current_transaction()
    return False if txn is None else txn.add_custom_attribute(key, value)


def notice_error(error: Union[BaseException, ExcInfo, None] = None) -> None:
    """Record an exception in the current transaction (default: the one being handled)."""
    txn = current_transaction()
    if txn is not None:
        txn.notice_error(error)


def set_transaction_name(name: str, group: Optional[str] = None) -> None:
    """Rename the current transaction (and optionally regroup it)."""
    txn = current_transaction()
    if txn is not None:
        txn.set_name(name, group)


def ignore_transaction(flag: bool = True) -> None:
    """Do not report the current transaction (``flag=False`` undoes it)."""
    txn = current_transaction()
    if txn is not None:
        txn.ignore(flag)
