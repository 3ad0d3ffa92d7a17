// circle-ws-web demo page: boots Pyodide (from a memory snapshot when ./demo.sh made one), installs
// the wheel (micropip, or with Pyodide when served locally), and drives
// circle_ws_web through demo/app.py. This file owns the DOM; app.py owns the clients.
//
// Configuration, later entries win:
//   1. defaults: Pyodide 314.0.7 from the jsDelivr CDN, the wheel from PyPI, two local servers;
//   2. /config.json next to the page (written by ./demo.sh: local Pyodide, lock, wheel, servers);
//   3. query parameters: indexURL, lockFileURL, packageBaseURL, wheel, server (repeatable),
//      autoconnect=0|1, cdn=1 (ignore config.json).
//
// For tests: window.demo exposes {config, timings, statusHistory, bootError}; the elements carry
// data-testid attributes (see index.html), and boot-status reads "ready" once the page is usable.
"use strict";

(() => {
  const PYODIDE_VERSION = "314.0.7";
  const DEFAULTS = {
    source: "cdn",
    indexURL: `https://cdn.jsdelivr.net/npm/pyodide@${PYODIDE_VERSION}/`,
    // The npm package holds only the runtime; its lock's wheels (micropip) live here:
    packageBaseURL: `https://cdn.jsdelivr.net/pyodide/v${PYODIDE_VERSION}/full/`,
    lockFileURL: null,
    wheel: "circle-ws-web",
    pyodideVersion: PYODIDE_VERSION,
    autoconnect: true,
    servers: [
      { url: "ws://127.0.0.1:8701", label: "open", note: "no authentication" },
      { url: "ws://127.0.0.1:8702", label: "auth", note: "authentication required" },
    ],
  };
  const STATUS_WORDS = {
    disconnected: "not connected yet",
    connecting: "opening the WebSocket",
    authenticating: "signing the server's nonce",
    connected: "ready for scripts",
    reconnecting: "connection lost: retrying with backoff",
    closed: "closed by Disconnect",
  };
  // What the status word says while a client is paused (its `paused` property), whatever its
  // status: a connected client keeps its socket while offline (Chromium holds the frames).
  const PAUSED_WORDS = {
    offline: "offline: waiting for the network",
    "page hidden": "paused: page hidden",
  };
  const PAUSED_TITLES = {
    offline: "the browser says the network is gone: no attempt until it is back, then one at once",
    "page hidden": "the page was hidden (back-forward cache or frozen): it reconnects when shown again",
  };
  const MAX_LOG_ENTRIES = 400;

  const $ = (sel, root = document) => root.querySelector(sel);
  const byTestId = (id) => $(`[data-testid="${id}"]`);
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  };

  const state = {
    app: null, // the Python DemoApp (PyProxy), once booted
    phase: "idle", // idle | connecting | connected | disconnecting
    session: 0, // bumped by every Connect and Disconnect: a late answer to an old Connect is ignored
    servers: [], // [{url, label, note, status, requireAuth}]
    metrics: {},
    keyless: false, // the running manager was built without a private key
    connectMs: null, // how long the last Connect took, shown while every server stays up
  };
  const demo = {
    config: null,
    timings: {},
    statusHistory: [], // [{url, status, paused, t}] for tests: one per status change
    pausedHistory: [], // [{url, paused, t}] for tests: one per change of a client's paused
    bootError: null,
  };
  window.demo = demo;

  // --- configuration -----------------------------------------------------------------------

  async function loadConfig() {
    const params = new URLSearchParams(location.search);
    let config = { ...DEFAULTS };
    if (params.get("cdn") !== "1" && location.protocol !== "file:") {
      try {
        const resp = await fetch("config.json", { cache: "no-store" });
        if (resp.ok) config = { ...config, ...(await resp.json()) };
      } catch (err) {
        /* no config.json: the CDN defaults stay */
      }
    }
    // The CDN's package base belongs to the CDN's runtime: another indexURL brings its own.
    if (params.has("indexURL")) config.packageBaseURL = null;
    for (const key of ["indexURL", "lockFileURL", "packageBaseURL", "wheel"]) {
      if (params.has(key)) config[key] = params.get(key);
    }
    if (params.has("server")) {
      config.servers = params.getAll("server").map((url) => ({ url, label: "", note: "" }));
    }
    if (params.has("autoconnect")) config.autoconnect = !["0", "false", "no"].includes(params.get("autoconnect"));
    const abs = (u) => (u ? new URL(u, location.href).href : null);
    config.indexURL = abs(config.indexURL);
    if (!config.indexURL.endsWith("/")) config.indexURL += "/";
    config.lockFileURL = abs(config.lockFileURL);
    config.packageBaseURL = abs(config.packageBaseURL);
    // A wheel is a URL (ends in .whl) or a requirement micropip resolves from PyPI.
    if (/\.whl($|\?)/.test(config.wheel)) config.wheel = abs(config.wheel);
    return config;
  }

  // --- boot steps --------------------------------------------------------------------------

  function setStep(name, stepState, detail) {
    const li = $(`.steps [data-step="${name}"]`);
    li.dataset.state = stepState;
    if (detail !== undefined) $(".detail", li).textContent = detail;
  }

  function setBootStatus(word, text) {
    const pill = byTestId("boot-status");
    pill.textContent = word;
    pill.dataset.state = word;
    if (text) pill.title = text;
  }

  const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

  async function timed(name, fn) {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      demo.timings[name + "_ms"] = Math.round(performance.now() - t0);
    }
  }

  // A local web root (./demo.sh) serves tools/snapshot_boot.mjs next to Pyodide: it restores the
  // memory snapshot `python tools/snapshot.py` made (circle-ws-web already imported: about a
  // second instead of three), or boots with the wheel fetched meanwhile. null: not available here
  // (a CDN, a wheel from PyPI, an older web root), boot the ordinary way.
  async function bootLocal(config) {
    if (config.source !== "local" || !/\.whl($|\?)/.test(config.wheel)) return null;
    let bootPyodide;
    try {
      ({ bootPyodide } = await import(config.indexURL + "snapshot_boot.mjs"));
    } catch (err) {
      return null;
    }
    const out = await bootPyodide({
      indexURL: config.indexURL,
      lockFileURL: config.lockFileURL,
      wheelURL: config.wheel,
      loadPyodide: {
        stdout: (line) => console.log("[py] " + line),
        stderr: (line) => console.warn("[py stderr] " + line),
      },
    });
    if (out.snapshotSkipped) demo.timings.snapshot_skipped = out.snapshotSkipped;
    return out;
  }

  async function boot() {
    const t0 = performance.now();
    if (location.protocol === "file:") {
      throw new Error(
        "this page must be served over http(s): run ./demo.sh, or `python -m http.server` in demo/",
      );
    }
    const config = await loadConfig();
    demo.config = config;
    const origin = new URL(config.indexURL).origin;
    const where =
      config.source === "local"
        ? "served locally, offline"
        : origin === location.origin
          ? "from this site"
          : origin === "https://cdn.jsdelivr.net"
            ? "from the jsDelivr CDN"
            : `from ${new URL(config.indexURL).host}`;
    $("#pyodide-source").textContent = `Pyodide ${config.pyodideVersion || PYODIDE_VERSION} · ${where}`;
    for (const s of config.servers) addServerRow(s.url, s.label, s.note, !!s.requireAuth);

    setStep("pyodide", "active", `loading ${where}…`);
    let booted = null; // served by ./demo.sh: tools/snapshot_boot.mjs (a memory snapshot when there is one)
    const pyodide = await timed("pyodide", async () => {
      booted = await bootLocal(config);
      if (booted) return booted.pyodide;
      let loadPyodide;
      try {
        ({ loadPyodide } = await import(config.indexURL + "pyodide.mjs"));
      } catch (err) {
        const offline = origin !== location.origin ? " Offline? ./demo.sh serves Pyodide from this machine." : "";
        throw new Error(`could not load Pyodide from ${config.indexURL} (${err.message || err}).${offline}`);
      }
      const options = {
        indexURL: config.indexURL,
        stdout: (line) => console.log("[py] " + line),
        stderr: (line) => console.warn("[py stderr] " + line),
      };
      if (config.lockFileURL) options.lockFileURL = config.lockFileURL;
      if (config.packageBaseURL && config.source !== "local") options.packageBaseUrl = config.packageBaseURL;
      return loadPyodide(options);
    });
    demo.timings.boot_route = booted ? booted.route : "micropip";
    const restored = demo.timings.boot_route === "snapshot";
    setStep("pyodide", "done", `${restored ? "restored from a memory snapshot" : "Python in WebAssembly"} · ${fmtMs(demo.timings.pyodide_ms)}`);

    setStep("install", "active", booted ? "circle-ws-web" : "micropip.install(…)");
    await timed("install", async () => {
      if (!booted) {
        const errors = [];
        await pyodide.loadPackage("micropip", {
          messageCallback: () => {},
          errorCallback: (msg) => errors.push(msg),
        });
        if (errors.length) throw new Error("loading micropip failed: " + errors.join("; "));
        const micropip = pyodide.pyimport("micropip");
        try {
          await micropip.install(config.wheel);
        } finally {
          micropip.destroy();
        }
      }
      const source = await (await fetch("app.py", { cache: "no-store" })).text();
      pyodide.FS.mkdirTree("/demo");
      pyodide.FS.writeFile("/demo/demo_app.py", source);
      // Importing also proves the install worked (micropip can "succeed" after a failed fetch).
      const mod = pyodide.runPython("import sys\nsys.path.insert(0, '/demo')\nimport demo_app\ndemo_app");
      state.app = mod.create(pythonBridge);
      mod.destroy();
    });
    if (config.testControls) document.body.dataset.testControls = "";
    if (config.extraServer) {
      $("#extra-server").textContent = config.extraServer;
      $("#extra-server-wrap").hidden = false;
    }
    renderFleetTip(config);
    const versions = JSON.parse(state.app.version());
    $("#lib-version").textContent = `circle-ws-web ${versions.circle_ws_web} · Python ${versions.python}`;
    const how = restored ? "in the snapshot" : booted ? "fetched while Pyodide started" : "+ ecdsa";
    setStep("install", "done", `circle-ws-web ${versions.circle_ws_web} ${how} · ${fmtMs(demo.timings.install_ms)}`);
    demo.timings.boot_ms = Math.round(performance.now() - t0);
    logLine("info", `Pyodide and circle-ws-web ready in ${fmtMs(demo.timings.boot_ms)}.`);
    onKeyInput();
    refreshControls();
    setInterval(refreshMetrics, 1000);

    if (config.autoconnect) {
      if (!byTestId("private-key").value.trim()) {
        generateKey();
        logLine("info", "Generated a fresh private key for this session (it never leaves the page).");
      }
      setBootStatus("ready", "Pyodide and circle-ws-web are loaded");
      await connect();
    } else {
      setStep("connect", "idle", "press Connect");
      setBootStatus("ready", "Pyodide and circle-ws-web are loaded");
    }
  }

  // --- calls from Python -------------------------------------------------------------------

  const pythonBridge = {
    status(url, status, paused = null) {
      demo.statusHistory.push({ url, status, paused, t: Math.round(performance.now()) });
      const server = state.servers.find((s) => s.url === url);
      if (server) {
        server.status = status;
        setPaused(server, paused);
        renderStatus(server);
        $(".drop", server.row).disabled = state.phase === "idle" || status !== "connected";
        announce(`${server.url}: ${PAUSED_WORDS[server.paused] || status}`);
      }
      logLine("status", status, { url, status });
      updateConnectStep();
    },
    log(source, level, text) {
      if (source === "app") logLine(level, text);
      else logLine(level === "error" || level === "critical" ? "warn" : "lib", text);
    },
  };

  // --- servers list ------------------------------------------------------------------------

  function addServerRow(url, label = "", note = "", requireAuth = false) {
    const server = { url, label, note, requireAuth, status: "disconnected", paused: null };
    state.servers.push(server);
    const status = el("span", { class: "status-word", "data-testid": "status", "data-url": url });
    const light = el("span", { class: "light", "aria-hidden": "true" });
    const remove = el("button", {
      class: "icon-button remove",
      type: "button",
      title: `Remove ${url}`,
      "aria-label": `Remove ${url}`,
      "data-testid": "remove-server",
      text: "×",
    });
    remove.addEventListener("click", () => removeServer(url));
    const drop = el("button", {
      class: "icon-button drop",
      type: "button",
      title: "Drop this connection (the server's test.drop): watch it reconnect",
      "aria-label": `Drop the connection to ${url}`,
      "data-testid": "drop",
      text: "⚡",
    });
    drop.addEventListener("click", () => dropConnection(url));
    // aria-live off: the numbers change every second; only status changes are announced.
    const metrics = el("dl", { class: "metrics", "aria-live": "off" });
    for (const [key, name, title] of [
      ["rtt", "round trip", "round trip of the last answered call"],
      ["avg", "average", "mean round trip of all answered calls"],
      ["calls", "calls", "calls sent: scripts, keep-alive pings, authentication steps"],
      ["errors", "errors", "calls answered with an error, lost or timed out"],
      ["reconnects", "reconnects", "successful reconnections after a lost connection"],
      ["priority", "priority", "Run on any prefers the lowest number (WsManager.health())"],
      ["breaker", "breaker", "circuit breaker: closed (calls go), open (refused at once), half-open (one probe)"],
      ["p50", "p50 / p95", "round trips of the manager's recent calls to this server"],
    ]) {
      metrics.append(el("div", { class: "metric", "data-metric": key, title }, el("dt", { text: name }), el("dd", { text: "–" })));
    }
    const head = el(
      "div",
      { class: "server-head" },
      el("code", { class: "url", text: url }),
      label ? el("span", { class: "tag", title: note, text: note || label }) : null,
      status,
    );
    const row = el("li", { class: "server", dataset: { url } }, light, el("div", { class: "server-main" }, head, metrics), drop, remove);
    server.row = row;
    $("#servers").append(row);
    renderStatus(server);
    renderTargets();
  }

  function removeServer(url) {
    const i = state.servers.findIndex((s) => s.url === url);
    if (i < 0 || state.phase !== "idle") return;
    state.servers[i].row.remove();
    state.servers.splice(i, 1);
    renderTargets();
    refreshControls();
  }

  function renderStatus(server) {
    server.row.dataset.status = server.status;
    if (server.paused) server.row.dataset.paused = server.paused;
    else delete server.row.dataset.paused;
    const word = $(".status-word", server.row);
    word.textContent = PAUSED_WORDS[server.paused] || server.status;
    word.title = PAUSED_TITLES[server.paused] || statusTitle(server);
  }

  // Connected without a key, a server that requires authentication refuses every script.
  function statusTitle(server) {
    if (server.status === "connected" && state.keyless) {
      return server.requireAuth
        ? "connected without a key: this server requires authentication, so it refuses scripts " +
            "(set a private key, then Disconnect and Connect)"
        : "connected without a key: scripts run only if this server needs no authentication";
    }
    return STATUS_WORDS[server.status] || "";
  }

  // Screen readers hear status changes from this one polite region, not every metric refresh.
  let announceTimer = null;
  const announced = [];
  function announce(text) {
    announced.push(text);
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => {
      $("#status-live").textContent = announced.splice(0).slice(-4).join(". ");
    }, 250);
  }

  // The Connect step follows the statuses, not only the answer to Connect.
  function updateConnectStep() {
    if (state.phase !== "connected") return;
    const n = state.servers.length;
    const up = state.servers.filter((s) => s.status === "connected" && !s.paused).length;
    const offline = state.servers.some((s) => s.paused);
    if (up < n) state.connectMs = null;
    if (n > 0 && up === n) {
      setStep("connect", "done", `${up} of ${n} connected` + (state.connectMs != null ? ` · ${fmtMs(state.connectMs)}` : ""));
    } else if (up > 0) {
      setStep("connect", "partial", `${up} of ${n} connected · ${offline ? "offline, waiting for the network" : "others retrying"}`);
    } else {
      setStep("connect", "failed", `0 of ${n} connected · ${offline ? "offline, waiting for the network" : "retrying"}`);
    }
  }

  // "Run on any" tip: the first server's real port, and how to stop exactly that process.
  function renderFleetTip(config) {
    const first = config.servers[0];
    let port = null;
    try {
      const u = new URL(first.url);
      port = u.port || (u.protocol === "wss:" ? "443" : "80");
    } catch (err) {
      /* no usable first server: the tip keeps its generic words */
    }
    if (port) $("#kill-command").textContent = `pkill -f -- "--port ${port} "`;
    $("#restart-note").textContent = config.restartAfter
      ? `; ./demo.sh starts it again ${config.restartAfter} s later, and its`
      : "; start it again, and its";
  }

  function setPaused(server, paused) {
    if (server.paused === paused) return;
    server.paused = paused;
    demo.pausedHistory.push({ url: server.url, paused, t: Math.round(performance.now()) });
  }

  // A client's `paused` changes without a status change when the network goes or comes back
  // (a connected client stays connected while offline): ask Python again. On the next turn,
  // since the library's own listener (added at the first Connect) runs after this one.
  function refreshPaused() {
    if (!state.app) return;
    const all = JSON.parse(state.app.paused());
    for (const server of state.servers) {
      const paused = server.url in all ? all[server.url] : null;
      if (paused !== server.paused) {
        setPaused(server, paused);
        renderStatus(server);
        announce(`${server.url}: ${PAUSED_WORDS[server.paused] || server.status}`);
      }
    }
    updateConnectStep();
  }

  function renderTargets() {
    const select = byTestId("run-target");
    const keep = select.value;
    select.replaceChildren(
      ...state.servers.map((s) => el("option", { value: s.url, text: s.label ? `${s.url}  (${s.label})` : s.url })),
    );
    if (state.servers.some((s) => s.url === keep)) select.value = keep;
  }

  function addServerFromInput() {
    const input = byTestId("server-url");
    const errorBox = $("#url-error");
    const raw = input.value;
    if (!state.app) return;
    if (state.phase !== "idle" && state.phase !== "connected") {
      errorBox.textContent = "Wait until Connect or Disconnect has finished.";
      return;
    }
    const res = JSON.parse(state.app.check_url(raw, JSON.stringify(state.servers.map((s) => s.url))));
    if (!res.ok) {
      errorBox.textContent = res.error;
      input.setAttribute("aria-invalid", "true");
      logLine("error", `Cannot add server: ${res.error}`);
      return;
    }
    errorBox.textContent = "";
    input.removeAttribute("aria-invalid");
    input.value = "";
    const third = demo.config && demo.config.extraServer === res.url;
    if (third) addServerRow(res.url, "third", "authentication required", true);
    else addServerRow(res.url);
    if (state.phase === "connected") joinFleet(res.url);
    else logLine("info", `Added ${res.url}.`);
    refreshControls();
  }

  function refreshMetrics() {
    if (!state.app) return;
    refreshPaused();
    const all = JSON.parse(state.app.metrics());
    for (const server of state.servers) {
      const m = all[server.url];
      const set = (key, value) => {
        const b = $(`[data-metric="${key}"] dd`, server.row);
        if (b.textContent !== value) b.textContent = value;
      };
      const ms = (v) => (v == null ? "–" : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);
      set("rtt", m ? ms(m.last_rtt_ms) : "–");
      set("avg", m ? ms(m.avg_rtt_ms) : "–");
      set("calls", m ? String(m.calls) : "–");
      set("errors", m ? String(m.errors + m.timeouts) : "–");
      set("reconnects", m ? String(m.reconnects) : "–");
    }
    renderHealth();
  }

  // The fleet: each server's priority, breaker and recent round trips (WsManager.health()).
  // The breaker's changes also reach the log, as the library's own log lines.
  function renderHealth() {
    const all = JSON.parse(state.app.health());
    const ms = (v) => (v == null ? "–" : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);
    for (const server of state.servers) {
      const h = all[server.url];
      const set = (key, value, title) => {
        const b = $(`[data-metric="${key}"] dd`, server.row);
        if (b.textContent !== value) b.textContent = value;
        if (title !== undefined) b.title = title;
      };
      set("priority", h ? String(h.priority) : "–");
      set("breaker", h ? h.breaker : "–", h && h.breaker === "open"
        ? `${h.failures} failures in a row (last: ${h.last_error}); a probe in ${h.retry_in} s or on reconnect` : "");
      set("p50", h && h.p50_ms != null ? `${ms(h.p50_ms)} / ${ms(h.p95_ms)}` : "–");
      if (h) server.row.dataset.breaker = h.breaker;
      else delete server.row.dataset.breaker;
    }
  }

  // --- private key -------------------------------------------------------------------------

  function showPublicKey(res) {
    const box = $("#pubkey");
    const input = byTestId("private-key");
    box.classList.toggle("error", !res.ok);
    if (!res.ok) {
      box.textContent = res.error;
      input.setAttribute("aria-invalid", "true");
    } else if (res.empty) {
      box.textContent = "No key: servers that require authentication will refuse scripts.";
      input.removeAttribute("aria-invalid");
    } else {
      input.removeAttribute("aria-invalid");
      box.replaceChildren(el("small", { text: "public key " }), el("code", { "data-testid": "public-key", text: res.public_key }));
    }
  }

  function onKeyInput() {
    if (!state.app) return;
    showPublicKey(JSON.parse(state.app.inspect_key(byTestId("private-key").value)));
  }

  function generateKey() {
    if (!state.app || state.phase !== "idle") return;
    const res = JSON.parse(state.app.generate_key());
    byTestId("private-key").value = res.key;
    showPublicKey(res);
  }

  // --- connect / disconnect ----------------------------------------------------------------

  function refreshControls() {
    const ready = !!state.app;
    const idle = state.phase === "idle";
    byTestId("connect").disabled = !ready || !idle || state.servers.length === 0;
    byTestId("disconnect").disabled = !ready || idle || state.phase === "disconnecting";
    byTestId("generate-key").disabled = !ready || !idle;
    byTestId("private-key").disabled = !idle;
    const canAdd = idle || state.phase === "connected"; // a running manager takes new servers
    byTestId("server-url").disabled = !canAdd;
    byTestId("add-server").disabled = !ready || !canAdd;
    for (const b of document.querySelectorAll(".remove")) b.disabled = !idle;
    for (const s of state.servers) $(".drop", s.row).disabled = idle || s.status !== "connected";
    byTestId("run").disabled = !ready || state.servers.length === 0;
    byTestId("run-all").disabled = !ready || state.servers.length === 0;
    byTestId("run-any").disabled = !ready || state.servers.length === 0;
    $("#lock-hint").hidden = idle;
    document.body.dataset.phase = state.phase;
  }

  async function connect() {
    if (!state.app || state.phase !== "idle") return;
    const urls = state.servers.map((s) => s.url);
    const key = byTestId("private-key").value;
    state.phase = "connecting";
    state.keyless = !key.trim();
    state.connectMs = null;
    const session = ++state.session;
    refreshControls();
    setStep("connect", "active", `connecting to ${urls.length} server${urls.length === 1 ? "" : "s"}…`);
    let res;
    try {
      res = JSON.parse(await timed("connect", () => state.app.connect(JSON.stringify(urls), key)));
    } catch (err) {
      res = { ok: false, started: false, error: String(err && err.message ? err.message : err) };
    }
    if (session !== state.session) {
      // Disconnect was pressed while this Connect was under way: Disconnect has the last word.
      return;
    } else if (!res.started) {
      state.phase = "idle";
      setStep("connect", "failed", "not connected: see the log");
      logLine("error", `Cannot connect: ${res.error}`);
    } else {
      state.phase = "connected";
      const results = res.results || {};
      const up = Object.values(results).filter((e) => e === null).length;
      if (res.ok) {
        logLine("ok", `Connected to all ${up} server${up === 1 ? "" : "s"} in ${fmtMs(res.ms)}.`);
        state.connectMs = res.ms;
      } else if (up > 0) {
        logLine("warn", `Connected to ${up} of ${urls.length} servers; the others join when they come up.`);
      } else {
        logLine("error", `${res.error}. Retrying in the background; press Disconnect to stop.`);
      }
      // From here on the step follows the lights (a server that comes up later, the network).
      updateConnectStep();
      for (const s of state.servers) renderStatus(s);
    }
    refreshControls();
    refreshMetrics();
  }

  async function disconnect() {
    if (!state.app || state.phase === "idle" || state.phase === "disconnecting") return;
    state.phase = "disconnecting";
    state.session++;
    refreshControls();
    try {
      const res = JSON.parse(await state.app.disconnect());
      logLine("info", `Disconnected: ${res.closed} client${res.closed === 1 ? "" : "s"} closed.`);
    } catch (err) {
      logLine("error", `Disconnect failed: ${err && err.message ? err.message : err}`);
    }
    state.phase = "idle";
    setStep("connect", "idle", "disconnected · press Connect");
    refreshControls();
    refreshMetrics();
  }

  // --- scripts -----------------------------------------------------------------------------

  async function run() {
    const url = byTestId("run-target").value;
    const script = byTestId("script").value;
    if (!state.app || !url) return;
    if (!script.trim()) return logLine("error", "The script is empty.");
    const res = JSON.parse(await state.app.run(url, script));
    noteAuthRequired(url, res);
    logRun(url, script, res, res.ms);
    refreshMetrics();
  }

  async function runAll() {
    const script = byTestId("script").value;
    if (!state.app) return;
    if (!script.trim()) return logLine("error", "The script is empty.");
    const res = JSON.parse(await state.app.run_all(script));
    if (!res.ok) {
      logRun(null, script, res);
    } else {
      for (const [url, r] of Object.entries(res.results)) {
        noteAuthRequired(url, r);
        logRun(url, script, r, res.ms);
      }
    }
    refreshMetrics();
  }

  async function runAny() {
    const script = byTestId("script").value;
    if (!state.app) return;
    if (!script.trim()) return logLine("error", "The script is empty.");
    const res = JSON.parse(await state.app.run_any(script));
    if (res.ok && res.failover) {
      logLine("warn", `Run on any: the preferred server could not take the call; failed over to ${shortUrl(res.url)}.`,
        { url: res.url });
    }
    // A failure names its server too when one took the call (app.py run_any); none when no
    // server could (all down or refusing): then the message says so.
    if (res.url) noteAuthRequired(res.url, res);
    logRun(res.url || null, script, res, res.ms);
    refreshMetrics();
  }

  // A server that answered "authentication required" needs a key: its light's tooltip says so.
  function noteAuthRequired(url, res) {
    const server = state.servers.find((s) => s.url === url);
    if (server && res && res.auth_required && !server.requireAuth) {
      server.requireAuth = true;
      renderStatus(server);
    }
  }

  // A server added while connected joins the running manager (WsManager.add_server).
  async function joinFleet(url) {
    const res = JSON.parse(await state.app.add_server(url));
    if (res.ok) {
      logLine("info", `Added ${url} to the running manager: it connects in the background.`, { url });
    } else {
      logLine("error", `Cannot add ${url}: ${res.error}`);
      const i = state.servers.findIndex((s) => s.url === url);
      if (i >= 0) {
        state.servers[i].row.remove();
        state.servers.splice(i, 1);
        renderTargets();
      }
    }
    refreshControls();
    refreshMetrics();
  }

  async function dropConnection(url) {
    if (!state.app) return;
    logLine("info", "Asking the server to drop this connection (test.drop)…", { url });
    const res = JSON.parse(await state.app.drop(url));
    if (!res.ok) logLine("error", `Drop failed: ${res.error}`, { url });
  }

  // --- output log --------------------------------------------------------------------------

  const clock = () => {
    const d = new Date();
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  };
  // ws:// is implied; wss:// and any path stay, so two different servers never look alike.
  const shortUrl = (url) => url.replace(/^ws:\/\//i, "").replace(/^([^/]*)\/$/, "$1");

  function appendEntry(entry) {
    const log = byTestId("output");
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(entry);
    while (log.childElementCount > MAX_LOG_ENTRIES) log.firstElementChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function logLine(kind, text, { url, status } = {}) {
    const entry = el(
      "div",
      { class: `entry ${kind}`, dataset: { kind } },
      el("time", { text: clock() }),
      el("span", { class: "who", text: url ? shortUrl(url) : "" }),
      el("span", { class: "msg", text }),
    );
    if (url) entry.dataset.url = url;
    if (status) entry.dataset.status = status;
    appendEntry(entry);
  }

  function logRun(url, script, res, ms) {
    const oneLine = script.trim().replace(/\s+/g, " ");
    const shown = oneLine.length > 60 ? oneLine.slice(0, 57) + "…" : oneLine;
    const msg = el("span", { class: "msg" }, el("code", { class: "script", text: shown }));
    if (res.ok) {
      msg.append(el("span", { class: "arrow", text: " → " }), el("b", { class: "value", text: res.output }));
    } else {
      msg.append(el("span", { class: "arrow", text: " ✗ " }), el("span", { class: "error-text", text: res.error }));
    }
    if (ms != null) msg.append(el("span", { class: "ms", text: fmtMs(ms) }));
    const entry = el(
      "div",
      { class: `entry run ${res.ok ? "ok" : "failed"}`, dataset: { kind: "run", ok: String(!!res.ok) } },
      el("time", { text: clock() }),
      el("span", { class: "who", text: url ? shortUrl(url) : "" }),
      msg,
    );
    if (url) entry.dataset.url = url;
    appendEntry(entry);
  }

  // --- wiring ------------------------------------------------------------------------------

  function wire() {
    byTestId("generate-key").addEventListener("click", generateKey);
    byTestId("private-key").addEventListener("input", onKeyInput);
    $("#toggle-key").addEventListener("click", () => {
      const input = byTestId("private-key");
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      // A toggle button: its name stays "Show private key", aria-pressed says whether it is shown.
      $("#toggle-key").setAttribute("aria-pressed", String(show));
    });
    $("#add-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      addServerFromInput();
    });
    byTestId("server-url").addEventListener("input", () => {
      $("#url-error").textContent = "";
      byTestId("server-url").removeAttribute("aria-invalid");
    });
    byTestId("connect").addEventListener("click", connect);
    byTestId("disconnect").addEventListener("click", disconnect);
    byTestId("run").addEventListener("click", run);
    byTestId("run-all").addEventListener("click", runAll);
    byTestId("run-any").addEventListener("click", runAny);
    byTestId("script").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        (ev.shiftKey ? runAll : run)();
      }
    });
    $("#clear-log").addEventListener("click", () => byTestId("output").replaceChildren());
    for (const type of ["offline", "online"]) {
      window.addEventListener(type, () => {
        logLine(type === "offline" ? "warn" : "info",
          type === "offline" ? "The browser is offline." : "The browser is online again.");
        setTimeout(refreshPaused, 0);
      });
    }
    for (const b of document.querySelectorAll("[data-example]")) {
      b.addEventListener("click", () => {
        byTestId("script").value = b.dataset.example;
        byTestId("script").focus();
      });
    }
    refreshControls();
  }

  function showBootError(err) {
    const text = String(err && err.message ? err.message : err);
    demo.bootError = text;
    const active = $(".steps [data-state='active']");
    if (active) {
      active.dataset.state = "failed";
      $(".detail", active).textContent = "failed";
    }
    const box = $("#boot-error");
    box.hidden = false;
    box.textContent = `Start-up failed: ${text}`;
    setBootStatus("error", text);
    logLine("error", `Start-up failed: ${text}`);
  }

  // Errors nobody caught still reach the person using the page.
  window.addEventListener("unhandledrejection", (ev) => {
    logLine("error", `Unexpected error: ${ev.reason && ev.reason.message ? ev.reason.message : ev.reason}`);
  });

  wire();
  setBootStatus("booting", "loading Pyodide");
  boot().catch(showBootError);
})();
