"""Authentication nonces: random, bound to one pubkey (and one connection), single use, expiring."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["NonceStore"]


class NonceStore:
    """Outstanding nonces keyed by ``(scope, pubkey)``.

    ``scope`` is the connection id: ``authenticate`` carries no nonce, so the server looks up
    the one it issued to that pubkey *on that connection*. Scoping keeps two connections that
    authenticate with the same key at the same time (e.g. two ports of one process sharing this
    store) from overwriting each other's nonce, and a nonce cannot be used from a connection
    that did not fetch it. A new ``issue`` for the same key replaces the previous nonce.

    The TTL is the same for every entry, so insertion order is expiry order and pruning only
    looks at the oldest entries (amortised O(1)). ``max_entries`` bounds memory against a peer
    that requests nonces for many pubkeys.
    """

    def __init__(
        self,
        ttl: float = 300.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError("nonce ttl must be > 0")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[Hashable, str], tuple[str, float]] = OrderedDict()
        self._by_scope: dict[Hashable, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, pubkey: str, scope: Hashable = None) -> str:
        """Return a fresh 128-bit nonce (32 hex chars) for ``pubkey`` in ``scope``."""
        now = self._clock()
        self._prune(now)
        key = (scope, pubkey)
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            self._forget(self._entries.popitem(last=False)[0])
        nonce = secrets.token_hex(16)
        self._entries[key] = (nonce, now + self.ttl)
        self._by_scope.setdefault(scope, set()).add(pubkey)
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
            pubkeys.discard(pubkey)
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
