"""Coordination stores: the contract in ``base``, one module per backend."""

from app.store.base import (
    AcquireResult,
    EventKind,
    KeyValue,
    LeaseGrant,
    Store,
    WatchEvent,
)

__all__ = ["AcquireResult", "EventKind", "KeyValue", "LeaseGrant", "Store", "WatchEvent"]
