"""A bounded, coalescing delivery queue between the stream and an output's workers.

``put`` never blocks and may be called from any thread: the stream hands alerts over and moves
on. An alert whose id is already waiting replaces the waiting copy in place (the receiver gets
the latest state once, not every step). When the queue is full the oldest waiting alert is
dropped and counted. ``get`` (async, on the output's loop) hands out the oldest waiting alert
whose id is not being delivered, so two updates of one alert are never delivered out of order.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable

from iotsec.analytics.alerts import Alert

__all__ = ["DeliveryQueue"]


class DeliveryQueue:
    """Alerts waiting for delivery, keyed by alert id, oldest first; thread-safe ``put``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a delivery queue needs a capacity of at least 1")
        self.capacity = capacity
        self._items: OrderedDict[str, Alert] = OrderedDict()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        #: Waiting alerts pushed out by newer ones because the queue was full.
        self.dropped = 0
        #: Alerts that replaced a waiting copy of themselves.
        self.coalesced = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` (call from that loop, before the first ``get``)."""
        self._loop = loop
        self._ready = asyncio.Event()
        if self._items:
            self._ready.set()

    def put(self, alerts: Iterable[Alert]) -> int:
        """Queue ``alerts``; returns how many were taken (all: overflow drops the oldest)."""
        taken = 0
        with self._lock:
            for alert in alerts:
                key = alert.alert_id
                if key in self._items:
                    self._items[key] = alert  # keeps its place in line
                    self.coalesced += 1
                else:
                    if len(self._items) >= self.capacity:
                        self._items.popitem(last=False)
                        self.dropped += 1
                    self._items[key] = alert
                taken += 1
        if taken:
            self._wake()
        return taken

    async def get(self) -> Alert:
        """The oldest waiting alert not already in delivery; waits for one."""
        ready = self._ready
        if ready is None:
            raise RuntimeError("DeliveryQueue.get before bind")
        while True:
            with self._lock:
                for key in self._items:
                    if key not in self._in_flight:
                        alert = self._items.pop(key)
                        self._in_flight.add(key)
                        return alert
                ready.clear()
            await ready.wait()

    def done(self, alert: Alert) -> None:
        """Delivery of ``alert`` ended (sent or failed); a newer copy may go now."""
        with self._lock:
            self._in_flight.discard(alert.alert_id)
            waiting = alert.alert_id in self._items
        if waiting:
            self._wake()

    def take_all(self) -> list[Alert]:
        """Remove and return every waiting alert (at shutdown)."""
        with self._lock:
            taken = list(self._items.values())
            self._items.clear()
        return taken

    @property
    def waiting(self) -> int:
        """Alerts waiting (not counting those in delivery)."""
        return len(self._items)

    @property
    def in_flight(self) -> int:
        """Alerts being delivered now."""
        return len(self._in_flight)

    def idle(self) -> bool:
        """Nothing waiting and nothing in delivery."""
        with self._lock:
            return not self._items and not self._in_flight

    def _wake(self) -> None:
        loop, ready = self._loop, self._ready
        if loop is None or ready is None:
            return  # not started: ``bind`` sets ready when items are waiting
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            ready.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(ready.set)
