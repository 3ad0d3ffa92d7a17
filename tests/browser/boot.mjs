// Boot Pyodide from the local web root, install the circle-ws-web wheel with micropip and
// return a small runner. Shared by the page (harness.js) and the dedicated Worker (worker.js),
// so both modes boot exactly the same way.

// Python side of the runner: evaluates code in __main__ (top-level await allowed) and always
// returns a JSON string, so a Python error reaches the test as data with its full traceback.
const RUNNER_PY = `
import importlib, json, sys, traceback
import __main__
from pyodide.code import eval_code_async

HARNESS_MODULE_DIR = "/tmp/harness_modules"

def _setup():
    import os
    os.makedirs(HARNESS_MODULE_DIR, exist_ok=True)
    if HARNESS_MODULE_DIR not in sys.path:
        sys.path.insert(0, HARNESS_MODULE_DIR)

def _trim_traceback(exc):
    """Start the traceback at the test's code: the runner's own frames are noise."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<harness>":
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb
    elif isinstance(exc, SyntaxError):
        exc.__traceback__ = None  # the compile step's frames say nothing; the caret does

async def run(code):
    try:
        value = await eval_code_async(code, __main__.__dict__, filename="<harness>")
        return json.dumps({"ok": True, "value": value})
    except BaseException as exc:  # report everything, even SystemExit
        _trim_traceback(exc)
        return json.dumps({
            "ok": False,
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        })

def uploaded(name):
    """Forget a re-uploaded module so the next import reads the new source."""
    importlib.invalidate_caches()
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]

_setup()
`;

/** Resolve the boot configuration to ABSOLUTE URLs (Pyodide rejects relative ones). */
export function resolveConfig(config, base) {
  const abs = (u) => new URL(u, base).href;
  const indexURL = abs(config.indexURL || "/pyodide/");
  return {
    indexURL: indexURL.endsWith("/") ? indexURL : indexURL + "/",
    lockFileURL: abs(config.lockFileURL || new URL("pyodide-lock.json", abs(indexURL)).href),
    wheelURL: config.wheelURL ? abs(config.wheelURL) : null,
    manifestURL: abs(config.manifestURL || "/webroot.json"),
  };
}

/**
 * Boot Pyodide and install the wheel. `log(level, text)` receives Python's stdout/stderr and
 * loader messages. Throws (with a message naming the step) if any step fails.
 */
export async function boot(config, log) {
  const timings = {};
  const step = async (name, fn) => {
    const t0 = performance.now();
    try {
      return await fn();
    } catch (err) {
      throw new Error(`harness boot step '${name}' failed: ${err && err.stack ? err.stack : err}`);
    } finally {
      timings[name + "_ms"] = Math.round((performance.now() - t0) * 10) / 10;
    }
  };
  const started = performance.now();
  timings.boot_started_at_ms = Math.round(started);

  let wheelURL = config.wheelURL;
  if (!wheelURL) {
    const manifest = await step("manifest", async () => {
      const resp = await fetch(config.manifestURL);
      if (!resp.ok) throw new Error(`${config.manifestURL}: HTTP ${resp.status}`);
      return resp.json();
    });
    wheelURL = new URL(manifest.wheel, config.manifestURL).href;
  }

  const { loadPyodide } = await step("import_pyodide_mjs", () =>
    import(config.indexURL + "pyodide.mjs"),
  );
  const loadErrors = [];
  const pyodide = await step("pyodide_boot", () =>
    loadPyodide({
      indexURL: config.indexURL,
      lockFileURL: config.lockFileURL,
      stdout: (line) => log("log", line),
      stderr: (line) => log("stderr", line),
    }),
  );
  await step("micropip_load", async () => {
    await pyodide.loadPackage("micropip", {
      messageCallback: (msg) => log("debug", msg),
      errorCallback: (msg) => {
        loadErrors.push(msg);
        log("error", msg);
      },
    });
    if (loadErrors.length) throw new Error(loadErrors.join("\n"));
    pyodide.pyimport("micropip"); // loadPackage may "succeed" after a failed fetch: check
  });
  await step("wheel_install", async () => {
    const micropip = pyodide.pyimport("micropip");
    try {
      await micropip.install(wheelURL);
    } finally {
      micropip.destroy();
    }
  });
  const info = await step("import_check", async () => {
    const out = await pyodide.runPythonAsync(`
import json, sys, importlib.metadata
import circle_ws_web, ecdsa
json.dumps({
    "version": circle_ws_web.__version__,
    "dist_version": importlib.metadata.version("circle-ws-web"),
    "ecdsa": ecdsa.__version__,
    "platform": sys.platform,
    "python": sys.version.split()[0],
})`);
    return JSON.parse(out);
  });
  info.wheelURL = wheelURL;
  info.pyodide = pyodide.version;

  const runner = await step("runner_setup", async () => {
    const ns = pyodide.globals.get("dict")();
    pyodide.runPython(RUNNER_PY, { globals: ns });
    const run = ns.get("run");
    const uploaded = ns.get("uploaded");
    const moduleDir = ns.get("HARNESS_MODULE_DIR");
    ns.destroy();
    return { run, uploaded, moduleDir };
  });
  timings.boot_total_ms = Math.round((performance.now() - started) * 10) / 10;

  return {
    pyodide,
    info,
    timings,
    moduleDir: runner.moduleDir,
    /** Run Python (top-level await ok); resolves to a JSON string {ok, value | type, message, traceback}. */
    async run(code) {
      return await runner.run(code);
    },
    /** Write a file into Pyodide's FS (text, or bytes given as base64). */
    writeFile(path, data, encoding = "utf8") {
      const dir = path.substring(0, path.lastIndexOf("/"));
      if (dir) pyodide.FS.mkdirTree(dir);
      const bytes =
        encoding === "base64" ? Uint8Array.from(atob(data), (c) => c.charCodeAt(0)) : data;
      pyodide.FS.writeFile(path, bytes);
      return path;
    },
    /** Write `<moduleDir>/<name as path>.py` and make the next import see it. */
    uploadModule(name, source) {
      const path = `${runner.moduleDir}/${name.replaceAll(".", "/")}.py`;
      this.writeFile(path, source);
      runner.uploaded(name);
      return path;
    },
  };
}
