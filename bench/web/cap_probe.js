// WebSocket cap probe, for pages and dedicated Workers alike (cap_probe.py drives it).
// openMany(url, n, tag): opens n sockets one after another (each waits for open or close, so
// Chromium's connecting throttle never matters), at most `waitMs` per socket; returns how many
// opened, failed at once (the cap: "Insufficient resources") or stayed connecting.
const held = [];

async function openMany(url, n, tag, waitMs = 10000) {
  const r = { opened: 0, failed: 0, stuck: 0, first_failed: -1 };
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(`${url}/${tag}${i}`);
    held.push(ws);
    const outcome = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve("stuck"), waitMs);
      ws.onopen = () => { clearTimeout(timer); resolve("opened"); };
      ws.onclose = () => { clearTimeout(timer); resolve("failed"); };
    });
    r[outcome]++;
    if (outcome === "failed" && r.first_failed < 0) r.first_failed = i;
    if (outcome === "stuck") break;
  }
  return r;
}

// When is a slot given back? Closing one of the held sockets, then opening another: in the
// close handler, while the closed one is still closing, and 300 ms later.
async function slotRelease(url) {
  const open = (u) => new Promise((resolve) => {
    const ws = new WebSocket(u);
    ws.onopen = () => { held.push(ws); resolve(true); };
    ws.onclose = () => resolve(false);
  });
  const r = {};
  r.in_close_handler = await new Promise((resolve) => {
    const ws = held.pop();
    ws.onclose = () => open(`${url}/in-close`).then(resolve);
    ws.close();
  });
  held.pop().close();
  r.while_closing = await open(`${url}/closing`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  r.after_300_ms = await open(`${url}/later`);
  return r;
}

function closeAll() {
  for (const ws of held.splice(0)) ws.close(1000);
}

if (typeof document === "undefined") {  // a dedicated Worker: commands by message
  self.onmessage = async (e) => {
    const { url, n, tag } = e.data;
    self.postMessage(await openMany(url, n, tag));
  };
}
