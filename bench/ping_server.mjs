// A minimal WebSocket JSON-RPC `ping` server in plain Node (no npm packages): the bench's fast
// server. RFC 6455 framing by hand, text frames only; answers every request frame with
// {"jsonrpc":"2.0","result":"pong","id":<its id>} (result {"output":"pong"} for "play"). It is
// here so that the browser and CPython benchmarks measure the clients, not a server.
// Usage: node ping_server.mjs [--port P]...
// Prints one "listening on ws://127.0.0.1:PORT" line per port (0 picks a free one).
import http from "node:http";
import crypto from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function frame(opcode, payload) {
  const n = payload.length;
  let head;
  if (n < 126) head = Buffer.from([0x80 | opcode, n]);
  else if (n < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
  return Buffer.concat([head, payload]);
}

function reply(text) {
  let id = "null", result = '"pong"';
  try {
    const msg = JSON.parse(text);
    id = JSON.stringify(msg.id ?? null);
    if (msg.method === "play") result = '{"output":"pong"}';  // the fleet benchmarks run plays
  } catch { /* not JSON: id null */ }
  return frame(1, Buffer.from(`{"jsonrpc":"2.0","result":${result},"id":${id}}`));
}

function serveSocket(socket) {
  socket.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let parts = [];  // fragments of a message in progress
  socket.on("data", (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const out = [];
    for (;;) {
      if (buf.length < 2) break;
      const fin = buf[0] & 0x80, opcode = buf[0] & 0x0f, masked = buf[1] & 0x80;
      let len = buf[1] & 0x7f, off = 2;
      if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const maskOff = off;
      if (masked) off += 4;
      if (buf.length < off + len) break;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskOff + (i & 3)];
      buf = buf.subarray(off + len);
      if (opcode === 8) { out.push(frame(8, payload.subarray(0, 2))); socket.end(Buffer.concat(out)); return; }
      if (opcode === 9) { out.push(frame(10, payload)); continue; }
      if (opcode === 10) continue;
      parts.push(payload);
      if (!fin) continue;
      const text = Buffer.concat(parts).toString("utf8");
      parts = [];
      out.push(reply(text));
    }
    if (out.length) socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
  });
  socket.on("error", () => socket.destroy());
}

const ports = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) if (argv[i] === "--port") ports.push(Number(argv[++i]));
if (!ports.length) ports.push(0);

for (const port of ports) {
  const server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
  server.on("upgrade", (req, socket) => {
    const key = req.headers["sec-websocket-key"];
    const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                 `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
    serveSocket(socket);
  });
  server.listen(port, "127.0.0.1", () => {
    process.stdout.write(`listening on ws://127.0.0.1:${server.address().port}\n`);
  });
}
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
