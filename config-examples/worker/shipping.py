"""Example worker with classes and methods, driven by a thread pool."""

import time


class Carrier:
    """A shipping carrier client."""

    def quote(self, parcel):
        time.sleep(0.001)
        return 4.5 + parcel["kg"]

    @classmethod
    def default(cls):
        return cls()

    @staticmethod
    def validate(parcel):
        if parcel["kg"] <= 0:
            raise ValueError(f"parcel {parcel['id']} has no weight")


class ShipmentWorker:
    """Processes parcels one by one; process() is the background task."""

    class Audit:
        @staticmethod
        def record(parcel, price):
            time.sleep(0.0005)

    def __init__(self):
        self.carrier = Carrier.default()

    def process(self, parcel):
        Carrier.validate(parcel)
        price = self.carrier.quote(parcel)
        self.Audit.record(parcel, price)
        return price
