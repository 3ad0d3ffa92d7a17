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
// six); loadPyodide: more loadPyodide options (stdout, stderr, ...). A snapshot that cannot be
// used (none made, made for another wheel or Pyodide build, a failed fetch) is reported in
// `snapshotSkipped` and the page boots the ordinary way: a snapshot only ever saves time.
//
// makeSnapshot() is the other half, run by tools/snapshot.py in headless Chromium. Both halves
// must agree on SITE_ZIP: the snapshot's sys.path holds it and its modules were imported from it,
// so restoring writes the same bytes to the same path before Python runs (files are not part of
// the heap).

export const SITE_ZIP = "/lib/circle-site.zip";
const DEFAULT_PACKAGES = ["ecdsa", "six"];

const now = () => performance.now();
const ms = (t0) => Math.round((now() - t0) * 100) / 100;

async function fetchOk(url, how) {
  const resp = await fetch(url, { cache: "no-cache" });
  if (!resp.ok) throw new Error(`${how} ${url}: HTTP ${resp.status}`);
  return resp;
}

async function readManifests(indexURL) {
  // The web root's own manifest says which wheel it serves and whether it has a snapshot (so a
  // web root without one costs no 404); the snapshot's, which wheel and Pyodide it was made
  // from. A snapshot of other code must never run in its place.
  const rootURL = new URL("../webroot.json", indexURL).href;
  const root = await (await fetchOk(rootURL, "web root manifest")).json();
  if (!root.snapshot) return { skip: "no snapshot in this web root (python tools/snapshot.py makes one)" };
  const snap = await (await fetchOk(new URL(root.snapshot, rootURL).href, "snapshot manifest")).json();
  if (snap.wheel_sha256 !== root.wheel_sha256) return { skip: `snapshot made for another wheel (${snap.wheel})` };
  if (snap.pyodide_version !== root.pyodide_version) return { skip: `snapshot made for Pyodide ${snap.pyodide_version}` };
  return { snap };
}

/** Restore Python's state from the snapshot; a fresh random seed (the snapshot's is shared). */
const AFTER_RESTORE = `
import sys
if "random" in sys.modules:  # every page restores the same PRNG state: draw a fresh seed
    sys.modules["random"].seed()
del sys
`;

async function restore(loadPyodide, options, indexURL, snap, timings) {
  const t0 = now();
  const heap = fetchOk(indexURL + snap.snapshot, "snapshot").then((r) => r.arrayBuffer());
  const site = fetchOk(indexURL + snap.site_zip, "snapshot's packages").then((r) => r.arrayBuffer());
  heap.catch(() => {}); // awaited below; no unhandled rejection meanwhile
  site.catch(() => {});
  const pyodide = await loadPyodide({
    ...options,
    _loadSnapshot: heap,
    // Files are not in the heap: the packages go back where the snapshot imported them from,
    // before the interpreter resumes.
    fsInit: async (FS) => FS.writeFile(SITE_ZIP, new Uint8Array(await site)),
  });
  pyodide.runPython(AFTER_RESTORE);
  timings.restore_ms = ms(t0);
  return pyodide;
}

export async function bootPyodide({
  indexURL,
  lockFileURL,
  wheelURL,
  packages = DEFAULT_PACKAGES,
  snapshot = "auto",
  loadPyodide: extra = {},
} = {}) {
  const t0 = now();
  const timings = {};
  indexURL = new URL(indexURL, location.href).href; // Pyodide needs absolute URLs
  if (!indexURL.endsWith("/")) indexURL += "/";
  lockFileURL = new URL(lockFileURL || indexURL + "pyodide-lock.json", location.href).href;
  const module = import(indexURL + "pyodide.mjs");
  const manifests = snapshot === "off" ? Promise.resolve({ skip: "snapshot off" }) : readManifests(indexURL);
  manifests.catch(() => {});
  const { loadPyodide } = await module;
  const options = { indexURL, lockFileURL, ...extra };
  let snapshotSkipped = null;
  try {
    const found = await manifests;
    if (found.snap) {
      const pyodide = await restore(loadPyodide, options, indexURL, found.snap, timings);
      timings.boot_ms = ms(t0);
      return { pyodide, route: "snapshot", timings, snapshot: found.snap, snapshotSkipped };
    }
    snapshotSkipped = found.skip;
  } catch (err) {
    snapshotSkipped = `snapshot failed: ${err && err.message ? err.message : err}`;
  }
  if (snapshot === "require") throw new Error(snapshotSkipped);
  if (snapshotSkipped && snapshot !== "off") console.info(`[circle-ws-web] booting without a snapshot: ${snapshotSkipped}`);
  // `packages` are fetched while Pyodide starts (loadPackage after it would wait for both).
  const pyodide = await loadPyodide({ ...options, packages: wheelURL ? [wheelURL, ...packages] : [...packages] });
  timings.boot_ms = ms(t0);
  return { pyodide, route: "packages", timings, snapshot: null, snapshotSkipped };
}

// --- making one (tools/snapshot.py) -------------------------------------------------------------

/** What the snapshot holds: the wheels in one zip of compiled modules, and the import done. */
const MAKE = `
import compileall, gc, importlib, json, os, py_compile, shutil, sys, zipfile

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
keccak.keccak256  # picks the pure implementation (no pycryptodome here)
auth.precompute(8)  # the signer's widest table (~70 ms here, once); a page builds w = 6 itself
gc.collect()
json.dumps({
    "python": sys.version.split()[0],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("circle_ws_web", "ecdsa", "six")),
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
  const info = JSON.parse(pyodide.runPython(MAKE, { globals: ns }));
  ns.destroy();
  const site = pyodide.FS.readFile(SITE_ZIP);
  const heap = pyodide.makeMemorySnapshot();
  return { heap, site, info: { ...info, boot_ms: bootMs, make_ms: ms(t0) } };
}
