// Dedicated module Worker for harness.html?worker=1: the same boot as the page (boot.mjs),
// driven by postMessage, because JupyterLite runs its Pyodide kernel in a Worker.
import { boot } from "./boot.mjs";

const log = (level, text) => postMessage({ type: "log", level, text });
const errText = (err) => String(err && err.stack ? err.stack : err);

// Uncaught errors here never become a page "pageerror": forward them to the page.
self.addEventListener("error", (ev) => {
  postMessage({ type: "worker-error", error: `${ev.message} (${ev.filename}:${ev.lineno})` });
});
self.addEventListener("unhandledrejection", (ev) => {
  postMessage({ type: "worker-error", error: "unhandled rejection: " + errText(ev.reason) });
});

let harness = null;

self.onmessage = async (ev) => {
  const msg = ev.data;
  if (msg.type === "init") {
    try {
      harness = await boot(msg.config, log);
      postMessage({
        type: "ready",
        info: harness.info,
        timings: harness.timings,
        moduleDir: harness.moduleDir,
      });
    } catch (err) {
      postMessage({ type: "boot-error", error: errText(err) });
    }
    return;
  }
  try {
    let result;
    if (msg.type === "run") result = await harness.run(msg.code);
    else if (msg.type === "writeFile") result = harness.writeFile(msg.path, msg.data, msg.encoding);
    else if (msg.type === "uploadModule") result = harness.uploadModule(msg.name, msg.source);
    else throw new Error("unknown message type " + msg.type);
    postMessage({ type: "result", id: msg.id, result });
  } catch (err) {
    postMessage({ type: "result", id: msg.id, error: errText(err) });
  }
};
