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
import * as jsclient from "./jsclient.js";

const params = new URLSearchParams(location.search);
const authURL = params.get("auth");
const key = params.get("key");
const install = params.get("install") || "micropip";  // loadpackage, packages, snapshot
const t = {};
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

async function boot() {
  if (document.readyState !== "complete") {
    await new Promise((resolve) => window.addEventListener("load", resolve, { once: true }));
  }
  await new Promise((resolve) => setTimeout(resolve, 0));  // loadEventEnd is set after the handlers
  const nav = performance.getEntriesByType("navigation")[0];
  t.page_load_ms = Math.round(nav.loadEventEnd * 100) / 100;
  // The baseline: the same page, a plain-JS client, to its first result.
  const js = await jsclient.firstResult(authURL);
  t.js_connect_ms = js.connect_ms;
  t.js_first_call_ms = js.first_call_ms;
  t.js_first_result_at_ms = js.first_result_at_ms;

  const pyodideStart = now();
  const indexURL = new URL("/pyodide/", location.href).href;  // Pyodide wants absolute URLs
  const manifestURL = new URL("/webroot.json", location.href).href;
  const manifest = fetch(manifestURL).then((r) => r.json());
  let pyodide;
  if (install === "packages" || install === "snapshot") {
    const { bootPyodide } = await import(indexURL + "snapshot_boot.mjs");
    const wheelURL = new URL((await manifest).wheel, manifestURL).href;
    const booted = await bootPyodide({ indexURL, wheelURL, snapshot: install === "snapshot" ? "require" : "off" });
    pyodide = booted.pyodide;
    t.pyodide_ready_ms = Math.round((now() - pyodideStart) * 100) / 100;  // with the install
    t.pyodide_ready_at_ms = now();
    t.micropip_load_ms = 0;
    t.wheel_install_ms = 0;  // in the boot: fetched meanwhile (packages) or in the heap (snapshot)
    if (booted.timings.restore_ms !== undefined) t.restore_ms = booted.timings.restore_ms;
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
  // The in-page benchmark module, importable as page_bench.
  const src = await (await fetch("./page_bench.py")).text();
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

  // The user's path: manager, connect (authenticates), first result.
  const first = JSON.parse(
    await run(`await page_bench.cold_connect_and_first_result(${JSON.stringify(authURL)}, ${JSON.stringify(key)})`),
  );
  if (!first.ok) throw new Error(first.error);
  Object.assign(t, first.value);
  t.first_result_at_ms = now();
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

async function serve() {
  for (;;) {
    const cmd = await (await fetch("/api/next")).json();
    if (cmd.wait) continue;
    if (cmd.quit) return;
    await post("/api/result", { id: cmd.id, ...(await exec(cmd)) });
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
