// Boot Pyodide with circle-ws-web ready: from a memory snapshot when the web root has one that
// matches its wheel, else the ordinary way with the wheel downloaded while Pyodide starts.
//
// Why: Pyodide's own start (compiling the interpreter's state: importing its stdlib modules in
// WebAssembly) is most of a page's time to its first result (~2.5 s of ~3.4 s). A memory
// snapshot is that state, with circle-ws-web already imported and its signing table built,
// saved once by `python tools/snapshot.py`; restoring it is copying the heap back.
//
// tools/webroot.py serves this file as /pyodide/snapshot_boot.mjs, next to pyodide.mjs; the
// demo (demo/app.js) and the benchmark page (bench/web/bench.js) load it from there.
//
//   const { pyodide, route, timings } = await bootPyodide({ indexURL, lockFileURL, wheelURL });
//   // route: "snapshot" (restored) or "packages" (booted; the wheel, ecdsa and six loaded)
//
// Options: snapshot "auto" (default: use one if valid, else boot), "off" (never), "require"
// (fail instead of booting); packages: the wheel's dependencies from the lock (default ecdsa,
// six); webroot: the web root's manifest (webroot.json) or a promise of it, when the page
// fetches it anyway; wheelURL may be a promise too; loadPyodide: more loadPyodide options
// (stdout, stderr, ...). `timings` has the steps, `*_at_ms` since navigation start
// (manifests_at, module_start_at, wasm_ready_at, heap_arrived_at, heap_received_at,
// fs_ready_at, restored_at, ready_at). A snapshot that cannot be
// used (none made, made for another wheel or Pyodide build, a failed fetch) is reported in
// `snapshotSkipped` and the page boots the ordinary way: a snapshot only ever saves time.
//
// makeSnapshot() is the other half, run by tools/snapshot.py in headless Chromium. Both halves
// must agree on SITE_ZIP: the snapshot's sys.path holds it and its modules were imported from it,
// so restoring writes the same bytes to the same path before Python runs (files are not part of
// the heap).

export const SITE_ZIP = "/lib/circle-site.zip";
const DEFAULT_PACKAGES = ["ecdsa", "six"];
/** The heap file's own header (tools/snapshot.py writes it): "CSH1", then page size, sizes. */
const SPARSE_MAGIC = 0x31485343; // "CSH1" little-endian

const now = () => performance.now();
const ms = (t0) => Math.round((now() - t0) * 100) / 100;
const at = () => Math.round(now() * 100) / 100; // since navigation start

async function fetchOk(url, how, init = {}) {
  const resp = await fetch(url, { cache: "no-cache", ...init });
  if (!resp.ok) throw new Error(`${how} ${url}: HTTP ${resp.status}`);
  return resp;
}

async function readRoot(indexURL, webroot) {
  const rootURL = new URL("../webroot.json", indexURL).href;
  const root = webroot ? await webroot : await (await fetchOk(rootURL, "web root manifest")).json();
  return { root, rootURL };
}

function checkSnapshot(root, snap) {
  // A snapshot of other code must never run in its place.
  if (snap.wheel_sha256 !== root.wheel_sha256) return `snapshot made for another wheel (${snap.wheel})`;
  if (snap.pyodide_version !== root.pyodide_version) return `snapshot made for Pyodide ${snap.pyodide_version}`;
  if (snap.format !== 2) return `snapshot of an older format (${snap.format}): python tools/snapshot.py makes a new one`;
  return null;
}

/**
 * The heap file into `heap` (the interpreter's memory, zero-filled): the file holds Pyodide's
 * snapshot header and only the pages that are not all zeros (about half of the 30 MiB), so
 * half the bytes travel. Layout: u32 magic, page size, header bytes, page count; the header;
 * one u32 page index per page; the pages.
 */
function unpackHeap(file, heap) {
  const words = new Uint32Array(file.buffer, file.byteOffset, 4);
  if (words[0] !== SPARSE_MAGIC) throw new Error("the snapshot file is not a circle-ws-web heap (old format?)");
  const page = words[1];
  const headerBytes = words[2];
  const count = words[3];
  let pos = 16;
  heap.set(file.subarray(pos, pos + headerBytes), 0);
  pos += headerBytes;
  const index = new Uint32Array(file.buffer, file.byteOffset + pos, count);
  pos += count * 4;
  for (let i = 0; i < count; ) {
    let j = i + 1; // consecutive pages: one copy
    while (j < count && index[j] === index[j - 1] + 1) j++;
    const bytes = (j - i) * page;
    heap.set(file.subarray(pos, pos + bytes), headerBytes + index[i] * page);
    pos += bytes;
    i = j;
  }
  if (pos !== file.byteLength) throw new Error("the snapshot file is truncated or corrupt");
}

/**
 * The heap, fetched and unpacked in a worker: the main thread is busy meanwhile (Pyodide's JS
 * module and wasm linking), and a body read there arrives only as fast as the main thread
 * gets to it (15 MB took a second in the benchmark; the wasm, streamed to the compiler, did
 * not wait). Resolves to {heap, arrivedAt, unpackedAt} (ms since this page's navigation).
 * Without workers (a page whose CSP forbids blob: workers), the same on the main thread.
 */
function fetchHeap(url, size) {
  const onMain = async () => {
    const file = new Uint8Array(await (await fetchOk(url, "snapshot")).arrayBuffer());
    const arrivedAt = at();
    const heap = new Uint8Array(size);
    unpackHeap(file, heap);
    return { heap, arrivedAt, unpackedAt: at(), worker: false };
  };
  const source = `"use strict";
const SPARSE_MAGIC = ${SPARSE_MAGIC};
${unpackHeap.toString()}
const stamp = () => performance.timeOrigin + performance.now();
onmessage = async ({ data: { url, size } }) => {
  try {
    const resp = await fetch(url, { cache: "no-cache" });
    if (!resp.ok) throw new Error("snapshot " + url + ": HTTP " + resp.status);
    const file = new Uint8Array(await resp.arrayBuffer());
    const arrived = stamp();
    const heap = new Uint8Array(size);
    unpackHeap(file, heap);
    postMessage({ heap, arrived, unpacked: stamp() }, [heap.buffer]);
  } catch (err) {
    postMessage({ error: String(err && err.message ? err.message : err) });
  }
};`;
  let worker;
  const blobURL = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    worker = new Worker(blobURL);
  } catch (err) {
    URL.revokeObjectURL(blobURL);
    return onMain();
  }
  const local = (epoch) => Math.round((epoch - performance.timeOrigin) * 100) / 100;
  return new Promise((resolve, reject) => {
    const done = () => {
      worker.terminate();
      URL.revokeObjectURL(blobURL);
    };
    worker.onmessage = ({ data }) => {
      done();
      if (data.error) reject(new Error(data.error));
      else resolve({ heap: data.heap, arrivedAt: local(data.arrived), unpackedAt: local(data.unpacked), worker: true });
    };
    worker.onerror = (event) => {
      event.preventDefault(); // not a page error: the main thread does it instead
      done();
      onMain().then(resolve, reject);
    };
    worker.postMessage({ url, size });
  });
}

/** Restore Python's state from the snapshot; a fresh random seed (the snapshot's is shared). */
const AFTER_RESTORE = `
import sys
if "random" in sys.modules:  # every page restores the same PRNG state: draw a fresh seed
    sys.modules["random"].seed()
del sys
`;

/**
 * Where the JS functions the snapshot's modules made at import (`run_js` at module level: the
 * transports' helpers) live: the heap finds them by this path from globalThis. The manifest
 * has their source (arrow functions of the page's globals); a restore evaluates them again.
 */
export const JS_HOLDER = "__circle_ws_web_snapshot_functions";

function defineFunctions(sources) {
  const fns = {};
  sources.forEach((source, i) => {
    fns[`f${i}`] = (0, eval)(`(${source})`);
  });
  Object.defineProperty(globalThis, JS_HOLDER, { value: fns, configurable: true });
}

/**
 * Everything a restore needs is fetched at once: the heap, the packages' zip and (started by
 * loadPyodide) the interpreter's wasm, its JS and the stdlib; the wasm compiles while the heap
 * is still arriving. Pyodide would otherwise wait for the heap before it even starts compiling
 * (it takes the heap's size from it): it gets a zeroed heap of the size the manifest says at
 * once, and the bytes go in before the interpreter resumes (fsInit runs before the restore).
 */
async function restore(loadPyodide, asm, options, indexURL, snap, started, timings) {
  const heap = new Uint8Array(snap.heap_bytes);
  const fill = started.heap.then((got) => {
    timings.heap_arrived_at_ms = got.arrivedAt;
    timings.heap_unpacked_at_ms = got.unpackedAt;
    timings.heap_received_at_ms = at(); // on the main thread
    timings.heap_in_worker = got.worker;
    heap.set(got.heap);
  });
  fill.catch(() => {});
  defineFunctions(snap.js_functions || []);
  const createPyodideModule = async (settings) => {
    timings.module_start_at_ms = at();
    const instantiate = settings.instantiateWasm;
    settings.instantiateWasm = (imports, receive) =>
      instantiate(imports, (instance, module) => {
        timings.wasm_ready_at_ms = at();
        receive(instance, module);
      });
    return (await asm).default(settings);
  };
  const pyodide = await loadPyodide({
    ...options,
    createPyodideModule,
    _loadSnapshot: heap,
    // Files are not in the heap: the packages go back where the snapshot imported them from,
    // before the interpreter resumes; so do the heap's bytes.
    fsInit: async (FS) => {
      timings.fs_init_at_ms = at();
      const site = new Uint8Array(await (await started.site).arrayBuffer());
      FS.writeFile(SITE_ZIP, site);
      await fill;
      timings.fs_ready_at_ms = at();
    },
  });
  timings.restored_at_ms = at();
  pyodide.runPython(AFTER_RESTORE);
  timings.ready_at_ms = at();
  return pyodide;
}

export async function bootPyodide({
  indexURL,
  lockFileURL,
  wheelURL,
  packages = DEFAULT_PACKAGES,
  snapshot = "auto",
  webroot = null,
  loadPyodide: extra = {},
} = {}) {
  const t0 = now();
  const timings = { boot_start_at_ms: at() };
  indexURL = new URL(indexURL, location.href).href; // Pyodide needs absolute URLs
  if (!indexURL.endsWith("/")) indexURL += "/";
  lockFileURL = new URL(lockFileURL || indexURL + "pyodide-lock.json", location.href).href;
  // Both of Pyodide's modules at once (loadPyodide would import pyodide.asm.mjs, 1.2 MB, only
  // once it has run).
  const module = import(indexURL + "pyodide.mjs");
  const asm = import(indexURL + "pyodide.asm.mjs");
  module.catch(() => {});
  asm.catch(() => {});
  const options = { indexURL, lockFileURL, ...extra };
  let snapshotSkipped = null;
  if (snapshot !== "off") {
    // The web root's manifest says whether it has a snapshot (so one without costs no 404),
    // the snapshot's whether it is of this wheel; then its heap and packages at once.
    try {
      const { root, rootURL } = await readRoot(indexURL, webroot);
      if (!root.snapshot) {
        snapshotSkipped = "no snapshot in this web root (python tools/snapshot.py makes one)";
      } else {
        const snapURL = new URL(root.snapshot, rootURL).href;
        const snap = await (await fetchOk(snapURL, "snapshot manifest")).json();
        snapshotSkipped = checkSnapshot(root, snap);
        if (!snapshotSkipped) {
          timings.manifests_at_ms = at();
          const base = new URL(".", snapURL).href;
          const started = {
            heap: fetchHeap(base + snap.snapshot, snap.heap_bytes),
            site: fetchOk(base + snap.site_zip, "snapshot's packages"),
          };
          started.heap.catch(() => {}); // awaited in the restore; no unhandled rejection meanwhile
          started.site.catch(() => {});
          const { loadPyodide } = await module;
          const pyodide = await restore(loadPyodide, asm, options, indexURL, snap, started, timings);
          timings.restore_ms = ms(t0);
          timings.boot_ms = ms(t0);
          return { pyodide, route: "snapshot", timings, snapshot: snap, snapshotSkipped };
        }
      }
    } catch (err) {
      snapshotSkipped = `snapshot failed: ${err && err.message ? err.message : err}`;
    }
  } else {
    snapshotSkipped = "snapshot off";
  }
  if (snapshot === "require") throw new Error(snapshotSkipped);
  if (snapshotSkipped && snapshot !== "off") console.info(`[circle-ws-web] booting without a snapshot: ${snapshotSkipped}`);
  const { loadPyodide } = await module;
  const wheel = await wheelURL;
  // `packages` are fetched while Pyodide starts (loadPackage after it would wait for both).
  const pyodide = await loadPyodide({
    ...options,
    createPyodideModule: async (settings) => (await asm).default(settings),
    packages: wheel ? [wheel, ...packages] : [...packages],
  });
  timings.boot_ms = ms(t0);
  return { pyodide, route: "packages", timings, snapshot: null, snapshotSkipped };
}

// --- making one (tools/snapshot.py) -------------------------------------------------------------

/** What the snapshot holds: the wheels in one zip of compiled modules, and the import done. */
const MAKE = `
import compileall, gc, importlib, json, os, py_compile, re, shutil, sys, zipfile

BUILD = "/tmp/circle-site"
os.makedirs(BUILD)
for name in sorted(os.listdir("/tmp/circle-wheels")):
    with zipfile.ZipFile("/tmp/circle-wheels/" + name) as wheel:
        for member in wheel.namelist():
            # ecdsa ships its test suite (two thirds of the wheel); nothing imports it
            if not member.split("/")[-1].startswith("test_"):
                wheel.extract(member, BUILD)
# Byte code next to the sources (zipimport reads no __pycache__), valid whatever the file times:
# modules imported after a restore (the transports, at the first connect) skip compiling.
compileall.compile_dir(BUILD, quiet=1, legacy=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
with zipfile.ZipFile(SITE_ZIP, "w", zipfile.ZIP_STORED) as out:  # stored: imports read it as is
    for root, dirs, files in os.walk(BUILD):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            info = zipfile.ZipInfo(os.path.relpath(path, BUILD), date_time=(1980, 1, 1, 0, 0, 0))
            with open(path, "rb") as f:
                out.writestr(info, f.read())
shutil.rmtree(BUILD)
shutil.rmtree("/tmp/circle-wheels")
sys.path.insert(0, SITE_ZIP)
importlib.invalidate_caches()

import circle_ws_web
for name in circle_ws_web.__all__:  # the lazy names: builder, manager, client, ...
    getattr(circle_ws_web, name)
from circle_ws_web import auth, keccak
# What the first connect and the first call import: the page's transport and its events, the
# HMAC of RFC 6979. Not in the heap, each would be found in a zip and compiled from source
# on the page (Pyodide's stdlib ships no byte code).
import hashlib, hmac, pyodide.ffi.wrappers
keccak.keccak256  # picks the pure implementation (no pycryptodome here)
auth.precompute(8)  # the signer's widest table (~70 ms here, once); a page builds w = 6 itself
# One signature: whatever a signature sets up on first use is set up in the heap.
auth.PrivateKey("11" * 32).sign_message("a" * 64)
json.loads(json.dumps({"jsonrpc": "2.0", "id": "1", "method": "ping", "params": {}}))
# The transports make JS functions at import (run_js at module level): a heap may hold a JS
# object only if the page can find it again by a path from globalThis. Each such function is
# put on one global object and the module's name rebound to it from there (the same function:
# only the path is new); its source goes in the manifest, and a restore evaluates it again
# under that path before Python resumes. Only arrow functions: they ignore "this", the one
# thing the new binding changes; anything else held from JS makes the snapshot refuse.
from circle_ws_web.transports import current_platform
current_platform()
import js
from pyodide.code import run_js
from pyodide.ffi import JsProxy, to_js
_arrow = re.compile(r"\\s*(async\\s*)?(\\([^()]*\\)|[A-Za-z_]\\w*)\\s*=>")
_source_of = run_js("(f) => Function.prototype.toString.call(f)")
_rebind, JS_FUNCTIONS = [], []
for _name, _module in sorted(sys.modules.items()):
    if _name.split(".")[0] != "circle_ws_web":
        continue
    for _attr, _value in list(vars(_module).items()):
        if isinstance(_value, JsProxy) and _value.typeof == "function":
            _source = _source_of(_value)
            if "[native code]" in _source:
                continue  # a global (from js import WebSocket): restored by its own path
            if not _arrow.match(_source):
                raise RuntimeError(f"{_name}.{_attr}: a snapshot can hold only arrow functions from JS")
            _rebind.append((_module, _attr, _value))
            JS_FUNCTIONS.append(_source)
run_js("(fns) => Object.defineProperty(globalThis, HOLDER, { value: fns, configurable: true })".replace("HOLDER", repr(HOLDER)))(
    to_js({f"f{i}": value for i, (_, _, value) in enumerate(_rebind)}, dict_converter=js.Object.fromEntries))
_holder = getattr(js, HOLDER)
for _i, (_module, _attr, _value) in enumerate(_rebind):
    setattr(_module, _attr, getattr(_holder, f"f{_i}"))
del _arrow, _source_of, _rebind, _holder, _name, _module, _attr, _value, _source, _i, JsProxy, to_js, run_js, js
gc.collect()
json.dumps({
    "python": sys.version.split()[0],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("circle_ws_web", "ecdsa", "six")),
    "js_functions": JS_FUNCTIONS,
})
`;

/**
 * In a page started for it: boot with _makeSnapshot, import circle-ws-web from the given
 * wheels, and return {heap, site, info} (the snapshot, the packages' zip, what was imported).
 */
export async function makeSnapshot({ indexURL, lockFileURL, wheelURLs }) {
  const t0 = now();
  indexURL = new URL(indexURL, location.href).href;
  const { loadPyodide } = await import(indexURL + "pyodide.mjs");
  const pyodide = await loadPyodide({
    indexURL,
    lockFileURL: new URL(lockFileURL || indexURL + "pyodide-lock.json", location.href).href,
    _makeSnapshot: true,
  });
  const bootMs = ms(t0);
  // No loadPackage: it records what it loaded in state a snapshot cannot hold.
  pyodide.FS.mkdirTree("/tmp/circle-wheels");
  for (const url of wheelURLs) {
    const data = new Uint8Array(await (await fetchOk(url, "wheel")).arrayBuffer());
    pyodide.FS.writeFile("/tmp/circle-wheels/" + url.split("/").pop(), data);
  }
  const ns = pyodide.globals.get("dict")();
  ns.set("SITE_ZIP", SITE_ZIP);
  ns.set("HOLDER", JS_HOLDER);
  const info = JSON.parse(pyodide.runPython(MAKE, { globals: ns }));
  ns.destroy();
  pyodide.runPython("import gc; gc.collect()");
  const site = pyodide.FS.readFile(SITE_ZIP);
  const serializer = (obj) => {
    throw new Error(`a snapshot cannot hold this JS object (only what globalThis leads to): ${String(obj).slice(0, 200)}`);
  };
  const heap = pyodide.makeMemorySnapshot({ serializer });
  return { heap, site, info: { ...info, boot_ms: bootMs, make_ms: ms(t0) } };
}
