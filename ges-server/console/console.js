// The graph console: plain JavaScript, no dependencies, no build step.
//
// Safe by construction: every value that comes from the server (graph
// names, job names, fail reasons, error messages) is written with
// textContent or as a text node, never parsed as markup. The token lives
// in this tab's sessionStorage and travels only in the X-Auth-Token
// header; the event stream is read with fetch() so that it does too.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_PROJECT = "ges-console.project";
  const KEY_TOKEN = "ges-console.token";
  const LIVE_STATUSES = new Set(["pending", "running"]);
  const MAX_EVENT_BYTES = 1 << 20;
  const NODES_EVERY_MS = 2500;

  const S = {
    project: null,
    token: null,
    graphs: new Map(), // name -> { name, state, epoch, jobs: Map(id -> job) }
    rows: new Map(), // name -> row elements
    lastId: null,
    stream: null, // the AbortController of the open stream
    retry: null,
    tasks: { offset: 0, limit: 10, status: "", graph: "", total: 0 },
    taskTimer: null,
    // The nodes panel: its mode once known ("cluster" or "standalone"),
    // the next refresh, a refresh asked for soon, one in flight, and one
    // asked for while it was.
    // `gen` counts sign-outs, so that an answer to an earlier sign-in is
    // dropped.
    nodes: { mode: null, timer: null, soon: null, busy: false, again: false, gen: 0 },
  };

  // ---- elements --------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c); // strings become text nodes
    return e;
  }

  function badge(word, cls) {
    return el("span", { class: `badge s-${cls}`, text: word });
  }

  function say(text) {
    $("notice").textContent = text;
    $("action-error").textContent = "";
  }

  function fail(e) {
    $("action-error").textContent = String(e && e.message ? e.message : e);
  }

  function setLive(text, cls) {
    const live = $("live");
    live.textContent = text;
    live.className = `live live-${cls}`;
  }

  // ---- the API ----------------------------------------------------------

  function projectPath(rest) {
    return `/v2/${encodeURIComponent(S.project)}${rest}`;
  }

  async function api(method, rest, body, extra) {
    const headers = { ...extra, "X-Auth-Token": S.token, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(projectPath(rest), init);
    let data = null;
    try {
      data = await r.json();
    } catch (_) {
      data = null;
    }
    if (!r.ok) {
      const msg =
        data && typeof data.error_msg === "string"
          ? `${data.error_code}: ${data.error_msg}`
          : `HTTP ${r.status}`;
      const e = new Error(msg);
      e.status = r.status;
      throw e;
    }
    return data;
  }

  const g = (name) => `/graphs/${encodeURIComponent(name)}`;

  // ---- sign-in ----------------------------------------------------------

  async function signIn(project, token) {
    S.project = project;
    S.token = token;
    try {
      await api("GET", "/graphs?offset=0&limit=1");
    } catch (e) {
      S.project = S.token = null;
      throw e;
    }
    sessionStorage.setItem(KEY_PROJECT, project);
    sessionStorage.setItem(KEY_TOKEN, token);
    $("sign-in-panel").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $("who").hidden = false;
    $("who").textContent = `Project ${project}`;
    $("token").value = "";
    connect();
    $("new-graph").focus();
  }

  function signOut(why) {
    sessionStorage.removeItem(KEY_PROJECT);
    sessionStorage.removeItem(KEY_TOKEN);
    S.project = S.token = null;
    S.lastId = null;
    if (S.stream) S.stream.abort();
    S.stream = null;
    clearTimeout(S.retry);
    stopNodes();
    S.graphs.clear();
    S.rows.clear();
    $("graph-rows").replaceChildren();
    $("task-rows").replaceChildren();
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("who").hidden = true;
    $("sign-in-panel").hidden = false;
    $("sign-in-error").textContent = why || "";
    setLive("Signed out", "off");
    $("project").focus();
  }

  // ---- the event stream -------------------------------------------------

  async function connect() {
    const ctl = new AbortController();
    if (S.stream) S.stream.abort();
    S.stream = ctl;
    clearTimeout(S.retry);
    const headers = { "X-Auth-Token": S.token, Accept: "text/event-stream" };
    if (S.lastId !== null) headers["Last-Event-ID"] = S.lastId;
    try {
      const r = await fetch(projectPath("/events"), {
        headers,
        signal: ctl.signal,
        cache: "no-store",
        credentials: "omit",
      });
      if (r.status === 401 || r.status === 403) {
        signOut("The server refused the token: sign in again.");
        return;
      }
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      setLive("Live", "on");
      if (S.lastId === null) loadAll(); // the first time: read the state
      loadNodes(); // and who serves it, after every (re)connection
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let at;
        while ((at = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          dispatch(block);
        }
        if (buf.length > MAX_EVENT_BYTES) throw new Error("an event too large");
      }
    } catch (_) {
      if (ctl.signal.aborted) return;
    }
    if (S.stream !== ctl) return;
    setLive("Reconnecting…", "down");
    S.retry = setTimeout(connect, 2000);
  }

  function dispatch(block) {
    let id = null;
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (id !== null) S.lastId = id;
    if (event === "resync") {
      setLive("Live (resynced)", "on");
      loadAll();
      loadNodes();
    } else if (event === "change") {
      let e;
      try {
        e = JSON.parse(data.join("\n"));
      } catch (_) {
        return;
      }
      apply(e);
    }
  }

  function apply(e) {
    if (typeof e.graph !== "string") return;
    if (e.change === "graph_created" || e.change === "graph_removed" || e.change === "state") refreshNodesSoon();
    let graph = S.graphs.get(e.graph);
    switch (e.change) {
      case "graph_created":
        if (!graph) upsert({ name: e.graph, state: "stopped", epoch: 0, jobs: new Map() });
        break;
      case "graph_removed":
        remove(e.graph);
        break;
      case "state":
        if (!graph) {
          graph = { name: e.graph, state: e.to, epoch: e.epoch, jobs: new Map() };
        }
        graph.state = e.to;
        graph.epoch = e.epoch;
        upsert(graph);
        break;
      case "task":
        if (graph) {
          if (LIVE_STATUSES.has(e.status)) {
            graph.jobs.set(e.job_id, {
              id: e.job_id,
              type: e.job_type,
              status: e.status,
              progress: e.progress,
            });
          } else {
            graph.jobs.delete(e.job_id);
          }
          upsert(graph);
        }
        refreshTasksSoon();
        break;
      case "evicted":
        refreshTasksSoon();
        break;
      default:
        break;
    }
  }

  // ---- graphs -------------------------------------------------------------

  async function loadAll() {
    try {
      const [list, running, pending] = await Promise.all([
        api("GET", "/graphs?offset=0&limit=1000"),
        api("GET", "/graphs/jobs?status=running&limit=1000"),
        api("GET", "/graphs/jobs?status=pending&limit=1000"),
      ]);
      const jobs = new Map();
      for (const j of [...running.job_list, ...pending.job_list]) {
        if (!jobs.has(j.related_graph)) jobs.set(j.related_graph, new Map());
        jobs.get(j.related_graph).set(j.job_id, {
          id: j.job_id,
          type: j.job_type,
          status: j.status,
          progress: j.job_progress,
        });
      }
      const seen = new Set();
      for (const x of list.graphs) {
        seen.add(x.name);
        upsert({
          name: x.name,
          state: x.status_name,
          epoch: x.epoch,
          jobs: jobs.get(x.name) || new Map(),
        });
      }
      for (const name of [...S.graphs.keys()]) if (!seen.has(name)) remove(name);
    } catch (e) {
      if (e.status === 401 || e.status === 403) signOut("The server refused the token: sign in again.");
      else fail(e);
    }
    loadTasks();
  }

  function button(label, name, action) {
    const b = el("button", { type: "button", "aria-label": `${label} ${name}` }, label);
    b.addEventListener("click", () => action(name, b));
    return b;
  }

  function makeRow(name) {
    const state = el("td");
    const epoch = el("td");
    const job = el("td");
    const actions = el(
      "td",
      { class: "actions" },
      button("Start", name, (n) => act(n, "start", "Start")),
      button("Stop", name, (n) => act(n, "stop", "Stop")),
      button("Import…", name, importGraph),
      button("Export…", name, exportGraph),
      button("Clear…", name, clearGraph),
      button("Force restart…", name, forceRestart),
      button("Delete…", name, deleteGraph),
    );
    actions.lastChild.classList.add("danger");
    actions.children[5].classList.add("danger");
    const tr = el("tr", { "data-graph": name }, el("th", { scope: "row", text: name }), state, epoch, job, actions);
    return { tr, state, epoch, job };
  }

  function upsert(graph) {
    S.graphs.set(graph.name, graph);
    let row = S.rows.get(graph.name);
    if (!row) {
      row = makeRow(graph.name);
      S.rows.set(graph.name, row);
      const body = $("graph-rows");
      const after = [...S.rows.keys()].filter((n) => n > graph.name).sort()[0];
      body.insertBefore(row.tr, after ? S.rows.get(after).tr : null);
    }
    row.tr.setAttribute("data-state", graph.state);
    row.state.replaceChildren(badge(graph.state, graph.state));
    row.epoch.textContent = String(graph.epoch);
    const live = [...graph.jobs.values()];
    if (live.length === 0) {
      row.job.replaceChildren(el("span", { class: "hint", text: "none" }));
    } else {
      const j = live[live.length - 1];
      const bar = el("progress", { max: "100", value: String(j.progress), "aria-label": `${j.type} progress` });
      row.job.replaceChildren(
        el(
          "span",
          { class: "job", "data-job": j.id },
          el("span", { text: `${j.type} ${j.status}` }),
          bar,
          el("span", { text: `${j.progress}%` }),
        ),
      );
    }
    $("no-graphs").hidden = S.graphs.size > 0;
  }

  function remove(name) {
    const row = S.rows.get(name);
    if (row) row.tr.remove();
    S.rows.delete(name);
    S.graphs.delete(name);
    $("no-graphs").hidden = S.graphs.size > 0;
  }

  // ---- actions ------------------------------------------------------------

  async function act(name, verb, word, body) {
    try {
      const r = await api("POST", `${g(name)}/${verb}`, body === undefined ? {} : body);
      say(`${word} of ${name}: job ${r.job_id}`);
      return r;
    } catch (e) {
      fail(e);
      return null;
    }
  }

  // Shows a modal dialog; resolves to "ok" or "cancel".
  function ask(dialog) {
    return new Promise((resolve) => {
      const form = dialog.querySelector("form");
      const done = (value) => {
        form.removeEventListener("submit", submit);
        dialog.removeEventListener("close", closed);
        for (const c of cancels) c.removeEventListener("click", cancel);
        if (dialog.open) dialog.close();
        resolve(value);
      };
      const submit = (ev) => {
        ev.preventDefault();
        if (!form.checkValidity()) {
          form.reportValidity();
          return;
        }
        done("ok");
      };
      const cancel = () => done("cancel");
      const closed = () => done("cancel");
      const cancels = [...dialog.querySelectorAll(".cancel")];
      form.addEventListener("submit", submit);
      dialog.addEventListener("close", closed);
      for (const c of cancels) c.addEventListener("click", cancel);
      dialog.showModal();
    });
  }

  async function importGraph(name) {
    $("import-graph").textContent = name;
    if ((await ask($("import-dialog"))) !== "ok") return;
    const body = { edgeset_path: $("import-edges").value };
    if ($("import-vertices").value) body.vertexset_path = $("import-vertices").value;
    if ($("import-schema").value) body.schema_path = $("import-schema").value;
    await act(name, "import-graph", "Import", body);
  }

  async function exportGraph(name) {
    $("export-graph").textContent = name;
    if ((await ask($("export-dialog"))) !== "ok") return;
    await act(name, "export-graph", "Export", { graph_export_path: $("export-path").value });
  }

  async function confirm(title, text, items, go) {
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-list").replaceChildren(...items.map((t) => el("li", { text: t })));
    $("confirm-list").hidden = items.length === 0;
    $("confirm-go").textContent = go;
    return (await ask($("confirm-dialog"))) === "ok";
  }

  async function clearGraph(name) {
    if (!(await confirm(`Clear ${name}?`, `Every vertex and edge of ${name} is deleted.`, [], "Clear"))) return;
    await act(name, "clear-graph", "Clear");
  }

  async function deleteGraph(name) {
    if (!(await confirm(`Delete ${name}?`, `${name} and its jobs are removed for good.`, [], "Delete"))) return;
    try {
      await api("DELETE", g(name));
      say(`Deleted ${name}.`);
    } catch (e) {
      fail(e);
    }
  }

  async function forceRestart(name) {
    let live;
    try {
      const q = `graph_name=${encodeURIComponent(name)}&limit=1000`;
      const [running, pending] = await Promise.all([
        api("GET", `/graphs/jobs?${q}&status=running`),
        api("GET", `/graphs/jobs?${q}&status=pending`),
      ]);
      live = [...running.job_list, ...pending.job_list];
    } catch (e) {
      fail(e);
      return;
    }
    const items = live.map((j) => `${j.job_type} job ${j.job_id} (${j.status}, ${j.job_progress}%)`);
    const text =
      live.length === 0
        ? `${name} has no live jobs: the restart fails none.`
        : `The restart fails these live jobs of ${name}:`;
    if (!(await confirm(`Force restart ${name}?`, text, items, "Force restart"))) return;
    const r = await act(name, "restart", "Force restart");
    if (r) $("notice").setAttribute("data-restart-job", r.job_id);
  }

  // ---- the task center ------------------------------------------------------

  function refreshTasksSoon() {
    if (S.taskTimer !== null) return;
    S.taskTimer = setTimeout(() => {
      S.taskTimer = null;
      loadTasks();
    }, 250);
  }

  async function loadTasks() {
    const t = S.tasks;
    let q = `offset=${t.offset}&limit=${t.limit}`;
    if (t.status) q += `&status=${encodeURIComponent(t.status)}`;
    if (t.graph) q += `&graph_name=${encodeURIComponent(t.graph)}`;
    let page;
    try {
      page = await api("GET", `/graphs/jobs?${q}`);
    } catch (e) {
      fail(e);
      return;
    }
    t.total = page.job_count;
    const rows = page.job_list.map((j) => {
      const status = badge(j.status, `job-${j.status}`);
      const reason = el("td", { class: "reason", text: j.fail_reason || "" });
      return el(
        "tr",
        { "data-job": j.job_id, "data-status": j.status },
        el("td", { class: "mono", text: j.job_id }),
        el("td", { text: j.related_graph }),
        el("td", { text: j.job_type }),
        el("td", {}, status),
        el("td", { text: `${j.job_progress}%` }),
        el("td", { class: "time", text: j.begin_time || "" }),
        el("td", { class: "time", text: j.end_time || "" }),
        reason,
      );
    });
    $("task-rows").replaceChildren(...rows);
    const first = t.total === 0 ? 0 : t.offset + 1;
    const last = Math.min(t.offset + t.limit, t.total);
    $("page-info").textContent = `Jobs ${first}–${last} of ${t.total}`;
    $("prev-page").disabled = t.offset === 0;
    $("next-page").disabled = t.offset + t.limit >= t.total;
  }

  // ---- cluster nodes ----------------------------------------------------------

  // GET /v2/{project}/cluster, read from this node's applied state (the
  // panel should still answer when the cluster has no leader). A
  // standalone server says {"mode":"standalone"}: the panel stays hidden
  // and is not polled again until the event stream reconnects.
  async function loadNodes() {
    const n = S.nodes;
    if (n.busy) {
      n.again = true;
      return;
    }
    clearTimeout(n.timer);
    n.timer = null;
    if (S.token === null) return;
    const gen = n.gen;
    n.busy = true;
    let info = null;
    let error = null;
    try {
      info = await api("GET", "/cluster", undefined, { "X-Read-Consistency": "stale" });
    } catch (e) {
      error = e;
    }
    if (n.gen !== gen) return; // signed out (and perhaps in again) meanwhile
    n.busy = false;
    const panel = $("nodes-panel");
    if (error) {
      if (error.status === 401 || error.status === 403) {
        signOut("The server refused the token: sign in again.");
        return;
      }
      if (error.status === 404) {
        showStandalone(); // a server without the cluster view
        return;
      }
      if (!panel.hidden) $("nodes-status").textContent = `The cluster view is unavailable: ${error.message}`;
    } else if (info && info.mode === "cluster" && Array.isArray(info.nodes)) {
      showCluster(info);
    } else {
      showStandalone();
      return;
    }
    if (n.again) {
      n.again = false;
      loadNodes();
    } else {
      n.timer = setTimeout(loadNodes, NODES_EVERY_MS);
    }
  }

  function refreshNodesSoon() {
    if (S.nodes.mode !== "cluster" || S.nodes.soon !== null) return;
    S.nodes.soon = setTimeout(() => {
      S.nodes.soon = null;
      loadNodes();
    }, 250);
  }

  function stopNodes() {
    clearTimeout(S.nodes.timer);
    clearTimeout(S.nodes.soon);
    S.nodes.timer = S.nodes.soon = null;
    S.nodes.again = S.nodes.busy = false;
    S.nodes.mode = null;
    S.nodes.gen += 1;
    $("nodes-panel").hidden = true;
    $("nodes-panel").removeAttribute("data-mode");
    $("node-rows").replaceChildren();
    $("nodes-status").textContent = "";
  }

  function showStandalone() {
    S.nodes.mode = "standalone";
    $("node-rows").replaceChildren();
    $("nodes-status").textContent = "";
    $("nodes-panel").hidden = true;
    $("nodes-panel").setAttribute("data-mode", "standalone");
  }

  function showCluster(info) {
    S.nodes.mode = "cluster";
    const me = info.node;
    const rows = info.nodes.map((x) => {
      const id = String(x.id);
      const live = x.live === true;
      const leads = x.leader === true;
      const graphs = Array.isArray(x.graphs) ? x.graphs.map(String) : [];
      const name = el("th", { scope: "row" }, `Node ${id}`);
      if (x.id === me) name.append(" ", el("span", { class: "hint", text: "(this node)" }));
      return el(
        "tr",
        {
          "data-node": id,
          "data-leader": String(leads),
          "data-live": String(live),
          ...(x.id === me ? { "aria-current": "true" } : {}),
        },
        name,
        el("td", { class: "mono", text: typeof x.rpc === "string" ? x.rpc : "" }),
        el("td", {}, leads ? badge("leader", "leader") : el("span", { text: "follower" })),
        el("td", {}, badge(live ? "up" : "down", live ? "job-success" : "job-failed")),
        el(
          "td",
          { class: "node-graphs" },
          graphs.length === 0 ? el("span", { class: "hint", text: "none" }) : graphs.join(", "),
        ),
      );
    });
    $("node-rows").replaceChildren(...rows);
    const leader = info.leader === null || info.leader === undefined ? "no leader known" : `node ${info.leader} leads`;
    const up = info.nodes.filter((x) => x.live === true).length;
    $("nodes-status").textContent = `This node: ${me}; ${leader}; term ${info.term}; ${up} of ${info.nodes.length} nodes up.`;
    $("nodes-panel").setAttribute("data-mode", "cluster");
    $("nodes-panel").setAttribute("data-node", String(me));
    $("nodes-panel").hidden = false;
  }

  // ---- wiring -------------------------------------------------------------------

  function init() {
    $("sign-in").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const project = $("project").value.trim();
      const token = $("token").value;
      if (!project || !token) {
        $("sign-in-error").textContent = "Enter a project id and a token.";
        return;
      }
      $("sign-in-error").textContent = "";
      try {
        await signIn(project, token);
      } catch (e) {
        $("sign-in-error").textContent = `Sign-in refused: ${e.message}`;
      }
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("create").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = $("new-graph").value.trim();
      if (!name) return;
      try {
        await api("POST", "/graphs", { graph: { name } });
        say(`Created ${name}.`);
        $("new-graph").value = "";
      } catch (e) {
        fail(e);
      }
    });
    $("task-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      S.tasks.graph = $("filter-graph").value.trim();
      S.tasks.status = $("filter-status").value;
      S.tasks.limit = Number($("filter-limit").value) || 10;
      S.tasks.offset = 0;
      loadTasks();
    });
    $("prev-page").addEventListener("click", () => {
      S.tasks.offset = Math.max(0, S.tasks.offset - S.tasks.limit);
      loadTasks();
    });
    $("next-page").addEventListener("click", () => {
      S.tasks.offset += S.tasks.limit;
      loadTasks();
    });
    const project = sessionStorage.getItem(KEY_PROJECT);
    const token = sessionStorage.getItem(KEY_TOKEN);
    if (project && token) {
      signIn(project, token).catch(() => signOut("The saved sign-in was refused: sign in again."));
    } else {
      $("project").focus();
    }
  }

  init();
})();
