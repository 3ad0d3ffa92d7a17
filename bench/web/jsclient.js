// The baseline: a minimal hand-written JSON-RPC client on the page's own WebSocket, the least
// work a page can do per call (one JSON.stringify, one send, one JSON.parse, one Map lookup,
// one promise). The benchmark loops here are mirrored one for one in page_bench.py.

export class JsRpc {
  constructor(url) {
    this.url = url;
    this.next = 0;
    this.pending = new Map();
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.onopen = () => resolve(this);
      ws.onerror = () => reject(new Error(`cannot open ${this.url}`));
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        const p = this.pending.get(msg.id);
        if (p === undefined) return;
        this.pending.delete(msg.id);
        if ("error" in msg) p.reject(new Error(msg.error.message));
        else p.resolve(msg.result);
      };
      this.ws = ws;
    });
  }

  call(method, params = {}) {
    const id = String(++this.next);
    this.ws.send(JSON.stringify({ jsonrpc: "2.0", method, params, id }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  close() {
    return new Promise((resolve) => {
      this.ws.onclose = () => resolve();
      this.ws.close(1000);
    });
  }
}

/** Sequential round trips: per-call latencies in ms. */
export async function sequential(client, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await client.call("ping", {});
    out[i] = performance.now() - t0;
  }
  return out;
}

/** `total` calls by `inflight` workers that each call in a loop: calls per second. */
export async function throughput(client, inflight, total) {
  let left = total;
  const worker = async () => {
    while (left > 0) {
      left--;
      await client.call("ping", {});
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, worker));
  return total / ((performance.now() - t0) / 1000);
}

/** Open, one call, close: times of the JS baseline for the cold-start figures. */
export async function firstResult(url) {
  const t0 = performance.now();
  const c = await new JsRpc(url).open();
  const t1 = performance.now();
  await c.call("ping", {});
  const t2 = performance.now();
  await c.close();
  return { connect_ms: t1 - t0, first_call_ms: t2 - t1, first_result_at_ms: t2 };
}
