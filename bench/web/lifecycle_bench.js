// Lifecycle benchmark page (bench/lifecycle.py drives it with Playwright over CDP): boots
// Pyodide, installs the wheel with loadPackage, imports lifecycle_bench.py, and records the
// browser's own events with performance.now(), before any client listens, so each event's time
// is taken before the library reacts to it.
//
//   window.lifebench.ready      Promise: resolves when Python is ready (rejects on a failed boot)
//   window.lifebench.py(code)   Promise<string>: JSON {ok, value} or {ok: false, error}
//   window.lifebench.events     [[ms, type, detail]]: online, offline, visibilitychange, freeze, resume
const events = [];
const log = (type, detail) => events.push([performance.now(), type, detail]);
for (const t of ["online", "offline"]) addEventListener(t, () => log(t, navigator.onLine));
for (const t of ["visibilitychange", "freeze", "resume"]) {
  document.addEventListener(t, () => log(t, document.visibilityState));
}

async function boot() {
  const indexURL = new URL("/pyodide/", location.href).href; // Pyodide wants absolute URLs
  const { loadPyodide } = await import(indexURL + "pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL, lockFileURL: indexURL + "pyodide-lock.json" });
  const manifestURL = new URL("/webroot.json", location.href).href;
  const manifest = await (await fetch(manifestURL)).json();
  await pyodide.loadPackage([new URL(manifest.wheel, manifestURL).href, "ecdsa", "six"]);
  const src = await (await fetch("./lifecycle_bench.py")).text();
  pyodide.FS.mkdirTree("/tmp/bench");
  pyodide.FS.writeFile("/tmp/bench/lifecycle_bench.py", src);
  await pyodide.runPythonAsync("import sys; sys.path.insert(0, '/tmp/bench'); import lifecycle_bench");
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
  return (code) => run(code);
}

const lifebench = { events, py: null, error: null };
lifebench.ready = boot().then(
  (run) => {
    lifebench.py = run;
  },
  (err) => {
    lifebench.error = String(err && err.stack ? err.stack : err);
    throw err;
  },
);
window.lifebench = lifebench;
