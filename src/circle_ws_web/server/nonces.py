"""Authentication nonces: random, bound to one pubkey (and one connection), single use, expiring."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["NonceStore", "NonceStoreFull"]


class NonceStoreFull(Exception):
    """The global bound is reached; nothing is evicted to make room (see :class:`NonceStore`)."""


class NonceStore:
    """Outstanding nonces keyed by ``(scope, pubkey)``.

    ``scope`` is the connection id: ``authenticate`` carries no nonce, so the server looks up
    the one it issued to that pubkey *on that connection*. Scoping keeps two connections that
    authenticate with the same key at the same time (e.g. two ports of one process sharing this
    store) from overwriting each other's nonce, and a nonce cannot be used from a connection
    that did not fetch it. A new ``issue`` for the same key replaces the previous nonce.

    The TTL is the same for every entry, so insertion order is expiry order and pruning only
    looks at the oldest entries (amortised O(1)).

    Bounds, fair by construction: ``max_per_scope`` (default 8) outstanding nonces per
    connection, the oldest *of that connection* evicted to make room, so one peer requesting
    nonces for many pubkeys only ever evicts its own; and ``max_entries`` overall, against many
    connections at once: when full, :meth:`issue` raises :class:`NonceStoreFull` rather than
    evicting anybody else's pending nonce.
    """

    def __init__(
        self,
        ttl: float = 300.0,
        *,
        max_entries: int = 100_000,
        max_per_scope: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError("nonce ttl must be > 0")
        if max_entries < 1 or max_per_scope < 1:
            raise ValueError("max_entries and max_per_scope must be >= 1")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.max_per_scope = max_per_scope
        self._clock = clock
        self._entries: OrderedDict[tuple[Hashable, str], tuple[str, float]] = OrderedDict()
        # Per scope, its pubkeys in issue order (a dict is an ordered set): oldest first.
        self._by_scope: dict[Hashable, dict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, pubkey: str, scope: Hashable = None) -> str:
        """Return a fresh 128-bit nonce (32 hex chars) for ``pubkey`` in ``scope``.

        Raises :class:`NonceStoreFull` when ``max_entries`` nonces are outstanding.
        """
        now = self._clock()
        self._prune(now)
        key = (scope, pubkey)
        if self._entries.pop(key, None) is not None:
            self._forget(key)
        pubkeys = self._by_scope.get(scope)
        while pubkeys and len(pubkeys) >= self.max_per_scope:
            oldest = next(iter(pubkeys))
            del self._entries[(scope, oldest)]
            self._forget((scope, oldest))
        if len(self._entries) >= self.max_entries:
            raise NonceStoreFull(f"too many pending nonces on this server (limit {self.max_entries})")
        nonce = secrets.token_hex(16)
        self._entries[key] = (nonce, now + self.ttl)
        self._by_scope.setdefault(scope, {})[pubkey] = None
        return nonce

    def consume(self, pubkey: str, scope: Hashable = None) -> str | None:
        """Remove and return the live nonce for ``pubkey`` in ``scope``; None if none/expired.

        Any attempt consumes the nonce, successful or not, so a failed signature cannot be
        retried against it.
        """
        entry = self._entries.pop((scope, pubkey), None)
        if entry is None:
            return None
        self._forget((scope, pubkey))
        nonce, expires = entry
        return nonce if self._clock() < expires else None

    def discard_scope(self, scope: Hashable) -> None:
        """Forget every nonce of a scope (called when its connection closes)."""
        for pubkey in self._by_scope.pop(scope, ()):
            self._entries.pop((scope, pubkey), None)

    def _forget(self, key: tuple[Hashable, str]) -> None:
        """Drop ``key`` from the per-scope index (the entry itself is already gone)."""
        scope, pubkey = key
        pubkeys = self._by_scope.get(scope)
        if pubkeys is not None:
            pubkeys.pop(pubkey, None)
            if not pubkeys:
                del self._by_scope[scope]

    def _prune(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (_, expires) = next(iter(entries.items()))
            if expires > now:
                break
            del entries[key]
            self._forget(key)
