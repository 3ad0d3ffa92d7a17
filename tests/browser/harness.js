// Test harness page script: boots Pyodide (in the page, or in a dedicated Worker with
// ?worker=1, as JupyterLite does) and exposes window.harness for Playwright:
//
//   harness.ready                 Promise<info>, rejects with the failed boot step
//   harness.runPython(code)       Promise<string>: JSON {ok, value} or {ok:false, type, message, traceback}
//   harness.writeFile(path, data, encoding="utf8"|"base64")   -> Promise<path>
//   harness.uploadModule(name, source)                        -> Promise<path> (importable at once)
//   harness.timings               {page_script_start_ms, pyodide_boot_ms, micropip_load_ms,
//                                  wheel_install_ms, ..., ready_at_ms (since navigation start)}
//   harness.pyodide               the Pyodide API (page mode only)
//
// Query parameters / window.HARNESS_CONFIG: worker=1, indexURL, lockFileURL, wheelURL, manifestURL.
import { boot, resolveConfig } from "./boot.mjs";

const params = new URLSearchParams(location.search);
const userConfig = Object.assign({}, window.HARNESS_CONFIG || {});
for (const key of ["indexURL", "lockFileURL", "wheelURL", "manifestURL"]) {
  if (params.has(key)) userConfig[key] = params.get(key);
}
const useWorker = params.get("worker") === "1" || userConfig.worker === true;
const config = resolveConfig(userConfig, location.href);

const timings = { page_script_start_ms: Math.round(performance.now()) };
const stdout = [];
const stderr = [];

function log(level, text) {
  // Python's stderr goes to console.warn, not console.error: warnings are not failures.
  // The pytest fixture inspects harness.stderr for tracebacks separately.
  if (level === "stderr") {
    stderr.push(text);
    console.warn("[py stderr] " + text);
  } else if (level === "error") {
    console.error("[pyodide] " + text);
  } else if (level === "log") {
    stdout.push(text);
    console.log("[py] " + text);
  } else {
    console.debug("[pyodide] " + text);
  }
}

const harness = {
  mode: useWorker ? "worker" : "page",
  config,
  timings,
  stdout,
  stderr,
  info: null,
  error: null,
  pyodide: null,
};
window.harness = harness;

function finishTimings(bootTimings) {
  Object.assign(timings, bootTimings);
  timings.ready_at_ms = Math.round(performance.now());
}

if (!useWorker) {
  harness.ready = (async () => {
    const h = await boot(config, log);
    harness.pyodide = h.pyodide;
    harness.info = h.info;
    harness.moduleDir = h.moduleDir;
    harness.runPython = (code) => h.run(code);
    harness.writeFile = async (path, data, encoding) => h.writeFile(path, data, encoding);
    harness.uploadModule = async (name, source) => h.uploadModule(name, source);
    finishTimings(h.timings);
    return h.info;
  })();
} else {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  harness.worker = worker;
  const pending = new Map();
  let nextId = 1;
  let readyResolve, readyReject;
  harness.ready = new Promise((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  const call = (type, payload) =>
    harness.ready.then(
      () =>
        new Promise((resolve, reject) => {
          const id = nextId++;
          pending.set(id, { resolve, reject });
          worker.postMessage({ type, id, ...payload });
        }),
    );
  harness.runPython = (code) => call("run", { code });
  harness.writeFile = (path, data, encoding) => call("writeFile", { path, data, encoding });
  harness.uploadModule = (name, source) => call("uploadModule", { name, source });

  worker.onmessage = (ev) => {
    const msg = ev.data;
    if (msg.type === "log") {
      log(msg.level, msg.text);
    } else if (msg.type === "ready") {
      harness.info = msg.info;
      harness.moduleDir = msg.moduleDir;
      finishTimings(msg.timings);
      readyResolve(msg.info);
    } else if (msg.type === "boot-error") {
      readyReject(new Error(msg.error));
    } else if (msg.type === "result") {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (!p) return;
      if ("error" in msg) p.reject(new Error(msg.error));
      else p.resolve(msg.result);
    } else if (msg.type === "worker-error") {
      // Uncaught errors inside the worker are no "pageerror": surface them as console errors.
      console.error("[worker] " + msg.error);
    }
  };
  worker.onerror = (ev) => {
    console.error(`[worker] ${ev.message} (${ev.filename}:${ev.lineno})`);
    readyReject(new Error("worker failed: " + ev.message));
  };
  worker.postMessage({ type: "init", config });
}

harness.ready.catch((err) => {
  harness.error = String(err && err.stack ? err.stack : err);
  console.error("[harness] boot failed: " + harness.error);
});
