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
// Query: auth=<ws url of a reference server requiring auth>, key=<hex private key>,
// install=micropip (default: micropip.install(wheel URL)) or loadpackage (pyodide.loadPackage
// of the wheel URL and its dependencies by name, without micropip).
import * as jsclient from "./jsclient.js";

const params = new URLSearchParams(location.search);
const authURL = params.get("auth");
const key = params.get("key");
const install = params.get("install") || "micropip";  // or "loadpackage"
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
  const { loadPyodide } = await import(indexURL + "pyodide.mjs");
  const pyodide = await step("pyodide_ready", () =>
    loadPyodide({ indexURL, lockFileURL: indexURL + "pyodide-lock.json" }),
  );
  t.pyodide_ready_ms = Math.round((performance.now() - pyodideStart) * 100) / 100;  // with the import
  bench.pyodide = pyodide;
  const manifestURL = new URL("/webroot.json", location.href).href;
  const manifest = await (await fetch(manifestURL)).json();
  const wheelURL = new URL(manifest.wheel, manifestURL).href;
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
  t.install_route = install;
  await step("import", () => pyodide.runPythonAsync("import circle_ws_web"));
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
