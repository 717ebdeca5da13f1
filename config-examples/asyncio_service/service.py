"""Example asyncio service: concurrent coroutine tasks, each its own transaction.

    tasktrace-admin run-program --config config-examples/asyncio_service/tasktrace.toml \
        python config-examples/asyncio_service/service.py
"""

import asyncio
import random


async def fetch(url):
    await asyncio.sleep(random.uniform(0.001, 0.005))
    return f"<html>{url}</html>"


async def handle_message(message_id):
    body = await fetch(f"https://example.invalid/{message_id}")
    if message_id % 13 == 0:
        raise RuntimeError(f"message {message_id} is poison")
    return len(body)


async def stream_events(count):
    for i in range(count):
        await asyncio.sleep(0)
        yield i


async def main():
    results = await asyncio.gather(*(handle_message(i) for i in range(50)), return_exceptions=True)
    errors = sum(isinstance(r, Exception) for r in results)
    seen = [event async for event in stream_events(10)]
    print(f"handled {len(results)} messages ({errors} failed), streamed {len(seen)} events")


if __name__ == "__main__":
    asyncio.run(main())
