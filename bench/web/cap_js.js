// The socket-cap baseline: a hand-written page opening N servers the way circle-ws-web does
// (at most `opening` sockets connecting at once, the next one started as one opens; Infinity:
// all at once, what a naive page does), then one `play` on every server at once, and the JS
// heap before, while connected and after (gc() first). No authentication: signing needs a
// secp256k1 library, which the page does not have; bench/cap.py compares it with the
// library's unauthenticated run too. Mirrors cap_page.py.

const heap = () => {
  gc();
  gc();
  return performance.memory.usedJSHeapSize;
};

function openOne(url, sockets) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onclose = (e) => reject(new Error(`cannot open ${url}: code ${e.code}`));
    sockets.push(ws);
  });
}

function call(ws, id, method, params) {
  return new Promise((resolve, reject) => {
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.id !== id) return;
      if ("error" in msg) reject(new Error(msg.error.message));
      else resolve(msg.result);
    };
    ws.send(JSON.stringify({ jsonrpc: "2.0", method, params, id }));
  });
}

export async function run(urls, opening) {
  const heapBefore = heap();
  const sockets = [];
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < urls.length) await openOne(urls[next++], sockets);
  };
  await Promise.all(Array.from({ length: Math.min(opening, urls.length) }, worker));
  const connectMs = performance.now() - t0;
  const open = sockets.filter((ws) => ws.readyState === WebSocket.OPEN);
  const t1 = performance.now();
  const outputs = await Promise.all(open.map((ws) => call(ws, "1", "play", { script: "40 + 2" })));
  const playMs = performance.now() - t1;
  const heapConnected = heap();
  const t2 = performance.now();
  await Promise.all(
    sockets.map((ws) => new Promise((resolve) => {
      ws.onclose = () => resolve();
      ws.close(1000);
    })),
  );
  const disconnectMs = performance.now() - t2;
  sockets.length = 0;
  return {
    n: urls.length,
    connect_ms: connectMs,
    play_ms: playMs,
    disconnect_ms: disconnectMs,
    bad_results: outputs.filter((r) => !r || r.output !== "42").length,
    peak_sockets: open.length,
    heap_before: heapBefore,
    heap_connected: heapConnected,
    heap_after: heap(),
  };
}
