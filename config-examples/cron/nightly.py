"""Example cron script. Run it instrumented (from the repository root):

    TASKTRACE_APP_NAME=billing-cron tasktrace-admin run-program \
        --config config-examples/cron/tasktrace.toml python config-examples/cron/nightly.py
    tasktrace-admin report --app billing-cron
"""

import sys

import invoices


def main():
    for _ in range(5):
        sent, failed = invoices.send_invoices(20)
        print(f"sent {sent} invoices, {failed} failed")
    invoices.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
