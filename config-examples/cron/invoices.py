"""Example cron-style job module: the functions tasktrace.toml lists become background tasks."""

import random
import time


def fetch_accounts(count):
    """Pretend to load accounts from a database."""
    time.sleep(0.002)
    return [f"acct-{i}" for i in range(count)]


def render_invoice(account):
    """Pretend to render one invoice."""
    time.sleep(0.001)
    if random.random() < 0.1:
        raise ValueError(f"no billing address for {account}")
    return f"invoice for {account}"


def send_invoices(count=20):
    """The nightly job: one background task, with function traces inside."""
    sent = failed = 0
    for account in fetch_accounts(count):
        try:
            render_invoice(account)
            sent += 1
        except ValueError:
            failed += 1
    return sent, failed


def cleanup():
    """A second job in the same run."""
    time.sleep(0.003)
