// Benchmark page: times a cold start step by step (page load, Pyodide ready, micropip, wheel
// installed, import, connected and authenticated, first result), next to the JS baseline's
// own first result on the same page; then exposes window.bench for the driver (bench/browser.py):
//
//   bench.timings          {step: ms}; *_at_ms are since navigation start (also the first
//                          result posted to the driver)
//   bench.py(code)         Promise<string>: runs async Python, returns its JSON result
//   bench.js               the JS baseline client module (jsclient.js)
//   bench.pyodide          the Pyodide API
//
// Query: auth=<ws url of a reference server requiring auth>, key=<hex private key>, install=
//   micropip     (default) boot, then micropip.install(wheel URL): what PyScript and JupyterLite do;
//   loadpackage  boot, then pyodide.loadPackage([wheel URL, "ecdsa", "six"]): no micropip;
//   packages     loadPyodide({packages: [...]}): the same three fetched while Pyodide starts;
//   snapshot     restored from the web root's memory snapshot (tools/snapshot.py), circle-ws-web
//                already imported; packages and snapshot boot through /pyodide/snapshot_boot.mjs,
//                what the demo uses.
// visit=<n>: the page's n-th visit in this browser (bench/browser.py revisit(): the HTTP cache
//   and V8's code cache as a returning visitor has them); 1, the first, if absent.
//
// Order: Python's boot starts with the script, as an application page would; the JS baseline
// runs once circle-ws-web has its first result (so neither waits for the other), and its
// "navigation -> first result" is the load event + its own connect and first call.
// `tl_*_at_ms` is the boot's timeline (snapshot route: tools/snapshot_boot.mjs's steps) and
// `res_<file>_{start,end}_at_ms` when each big file started and finished arriving.
import * as jsclient from "./jsclient.js";

const params = new URLSearchParams(location.search);
const authURL = params.get("auth");
const key = params.get("key");
const install = params.get("install") || "micropip";  // loadpackage, packages, snapshot
const visit = Number(params.get("visit") || 1);
const t = { visit };
const now = () => Math.round(performance.now() * 100) / 100;
t.script_start_at_ms = now();

const bench = { timings: t, js: jsclient, error: null, pyodide: null };
window.bench = bench;

async function step(name, fn) {
  const t0 = performance.now();
  const out = await fn();
  t[name + "_ms"] = Math.round((performance.now() - t0) * 100) / 100;
  t[name + "_at_ms"] = now();
  return out;
}

const loaded = new Promise((resolve) => {
  if (document.readyState === "complete") resolve();
  else window.addEventListener("load", resolve, { once: true });
}).then(() => new Promise((resolve) => setTimeout(resolve, 0)));  // loadEventEnd is set after the handlers

/** When each big file of the boot started and finished arriving (Resource Timing). */
function resourceTimeline() {
  const names = ["pyodide.asm.wasm", "pyodide.asm.mjs", "python_stdlib.zip", "circle-snapshot.bin",
                 "circle-site.zip", "pyodide-lock.json", "page_bench.py"];
  for (const e of performance.getEntriesByType("resource")) {
    const name = names.find((n) => e.name.endsWith("/" + n));
    if (!name || t[`res_${name}_start_at_ms`] !== undefined) continue;
    const key = name.replace(/[^a-z0-9]+/gi, "_");
    t[`res_${key}_start_at_ms`] = Math.round(e.startTime * 100) / 100;
    t[`res_${key}_end_at_ms`] = Math.round(e.responseEnd * 100) / 100;
    t[`res_${key}_bytes`] = e.transferSize;  // 0 or ~300 (a 304) when the HTTP cache had it
  }
}

async function boot() {
  const pyodideStart = now();
  const indexURL = new URL("/pyodide/", location.href).href;  // Pyodide wants absolute URLs
  const manifestURL = new URL("/webroot.json", location.href).href;
  const manifest = fetch(manifestURL, { cache: "no-cache" }).then((r) => r.json());
  // The in-page benchmark module (importable as page_bench) arrives while Pyodide starts.
  const pageBench = fetch("./page_bench.py").then((r) => r.text());
  let pyodide;
  if (install === "packages" || install === "snapshot") {
    const { bootPyodide } = await import(indexURL + "snapshot_boot.mjs");
    const booted = await bootPyodide({
      indexURL,
      wheelURL: manifest.then((m) => new URL(m.wheel, manifestURL).href),
      webroot: manifest,
      snapshot: install === "snapshot" ? "require" : "off",
    });
    pyodide = booted.pyodide;
    t.pyodide_ready_ms = Math.round((now() - pyodideStart) * 100) / 100;  // with the install
    t.pyodide_ready_at_ms = now();
    t.micropip_load_ms = 0;
    t.wheel_install_ms = 0;  // in the boot: fetched meanwhile (packages) or in the heap (snapshot)
    if (booted.timings.restore_ms !== undefined) t.restore_ms = booted.timings.restore_ms;
    for (const [k, v] of Object.entries(booted.timings)) if (k.endsWith("_at_ms")) t["tl_" + k] = v;
  } else {
    const { loadPyodide } = await import(indexURL + "pyodide.mjs");
    pyodide = await step("pyodide_ready", () =>
      loadPyodide({ indexURL, lockFileURL: indexURL + "pyodide-lock.json" }),
    );
    t.pyodide_ready_ms = Math.round((now() - pyodideStart) * 100) / 100;  // with the import
    const wheelURL = new URL((await manifest).wheel, manifestURL).href;
    if (install === "loadpackage") {
      // No micropip: the wheel by URL, its dependencies by name from the lock file.
      t.micropip_load_ms = 0;
      await step("wheel_install", () => pyodide.loadPackage([wheelURL, "ecdsa", "six"]));
    } else {
      await step("micropip_load", () => pyodide.loadPackage("micropip"));
      await step("wheel_install", async () => {
        const micropip = pyodide.pyimport("micropip");
        try {
          await micropip.install(wheelURL);
        } finally {
          micropip.destroy();
        }
      });
    }
  }
  bench.pyodide = pyodide;
  t.install_route = install;
  t.installed_at_ms = now();  // every route: circle-ws-web can be imported from here on
  await step("import", () => pyodide.runPythonAsync("import circle_ws_web"));
  // What an application names next (the package imports them on first use).
  await step("import_app", () => pyodide.runPythonAsync("from circle_ws_web import CircleWsClient, ws_manager"));
  // The user's path, as a page runs it: one snippet (manager, connect: authenticates, first
  // result); the same as page_bench.cold_connect_and_first_result, which is compiled only after
  // (the harness is not what a page loads before its first result).
  const firstNs = pyodide.globals.get("dict")();
  const first = JSON.parse(await pyodide.runPythonAsync(`
import json, time
from circle_ws_web import ws_manager
t0 = time.perf_counter()
manager = ws_manager().private_key(${JSON.stringify(key)}).add_server_url(${JSON.stringify(authURL)}).build()
await manager.connect()
t1 = time.perf_counter()
result = await manager.execute_script(${JSON.stringify(authURL)}, "40 + 2")
t2 = time.perf_counter()
await manager.disconnect_all()
assert result.output == "42", result
json.dumps({"connect_auth_ms": (t1 - t0) * 1000, "first_result_ms": (t2 - t1) * 1000})
`, { globals: firstNs }));
  firstNs.destroy();
  t.first_result_at_ms = now();
  Object.assign(t, first);

  const src = await pageBench;
  pyodide.FS.mkdirTree("/tmp/bench");
  pyodide.FS.writeFile("/tmp/bench/page_bench.py", src);
  await pyodide.runPythonAsync("import sys; sys.path.insert(0, '/tmp/bench'); import page_bench");
  const ns = pyodide.globals.get("dict")();
  pyodide.runPython(
    `
import json
from pyodide.code import eval_code_async
import __main__
async def run(code):
    try:
        return json.dumps({"ok": True, "value": await eval_code_async(code, __main__.__dict__)})
    except BaseException as exc:
        import traceback
        return json.dumps({"ok": False, "error": "".join(traceback.format_exception(exc))})
`,
    { globals: ns },
  );
  const run = ns.get("run");
  ns.destroy();
  bench.py = (code) => run(code);
  t.connect_auth_at_ms = Math.round((t.first_result_at_ms - t.first_result_ms) * 100) / 100;

  await loaded;
  const nav = performance.getEntriesByType("navigation")[0];
  t.page_load_ms = Math.round(nav.loadEventEnd * 100) / 100;
  resourceTimeline();
  // The baseline: a plain-JS client on the same page, to its first result. Taken now rather
  // than first, so that circle-ws-web's figures do not include it; a JS page would connect
  // once loaded: its navigation -> first result is the load event + its connect + first call.
  const js = await jsclient.firstResult(authURL);
  t.js_connect_ms = js.connect_ms;
  t.js_first_call_ms = js.first_call_ms;
  t.js_first_result_at_ms = Math.round((t.page_load_ms + js.connect_ms + js.first_call_ms) * 100) / 100;
}

// The driver (bench/browser.py) launches Chromium on this page directly, without a DevTools
// connection (which would report every WebSocket frame to the driver and slow the very path
// being measured). Commands come by long-polling /api/next; results go back to /api/result.
const AsyncFunction = (async () => {}).constructor;

async function exec(cmd) {
  try {
    if (cmd.kind === "js") return { ok: true, value: await new AsyncFunction("bench", cmd.code)(bench) };
    return JSON.parse(await bench.py(cmd.code));
  } catch (err) {
    return { ok: false, error: String(err && err.stack ? err.stack : err) };
  }
}

const post = (path, body) => fetch(path, { method: "POST", body: JSON.stringify(body) });

/** The next visit of this page in the same browser (bench/browser.py revisit()). */
bench.revisit = () => {
  const url = new URL(location.href);
  url.searchParams.set("visit", String(visit + 1));
  bench.leaving = url.href;  // serve() goes there once this answer is posted, and polls no more
  return url.href;           // (a poll left open would take the next visit's first command)
};

async function serve() {
  for (;;) {
    const cmd = await (await fetch("/api/next")).json();
    if (cmd.wait) continue;
    if (cmd.quit) return;
    await post("/api/result", { id: cmd.id, ...(await exec(cmd)) });
    if (bench.leaving) {
      location.assign(bench.leaving);
      return;
    }
  }
}

window.addEventListener("error", (e) => post("/api/log", { level: "error", text: String(e.message) }));
window.addEventListener("unhandledrejection", (e) =>
  post("/api/log", { level: "error", text: "unhandled rejection: " + String(e.reason && e.reason.stack ? e.reason.stack : e.reason) }),
);

boot().then(
  async () => {
    await post("/api/result", { id: 0, ok: true, value: t });
    await serve();
  },
  async (err) => {
    bench.error = String(err && err.stack ? err.stack : err);
    await post("/api/result", { id: 0, ok: false, error: bench.error });
  },
);
