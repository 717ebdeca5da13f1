"""Run the example worker: 4 threads, 200 parcels, a few with bad data.

    tasktrace-admin run-program --config config-examples/worker/tasktrace.toml \
        python config-examples/worker/run_worker.py
"""

from concurrent.futures import ThreadPoolExecutor

from shipping import ShipmentWorker


def main():
    worker = ShipmentWorker()
    parcels = [{"id": i, "kg": (i % 17)} for i in range(200)]
    ok = failed = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(worker.process, p) for p in parcels]:
            try:
                future.result()
                ok += 1
            except ValueError:
                failed += 1
    print(f"processed {ok} parcels, {failed} rejected")


if __name__ == "__main__":
    main()
