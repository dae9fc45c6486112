// The explorer: one page over the node's own JSON API (same origin), no build step.
// Views: #/ (dashboard), #/block/<height>, #/task/<id>. Everything is built with DOM calls and
// textContent: nothing the chain carries is ever parsed as HTML.
// Who signed a block comes from the next block's last_commit (/activity); block time and throughput
// are charted from the same brief per-block rows.

const POLL_MS = 1000;
const SLOW_EVERY = 5; // evidence and arbitrations: every 5th poll
const HISTORY_MS = 3000;
const COLORS = ["#0f62fe", "#da1e28", "#198038", "#8a3ffc", "#ff832b", "#007d79", "#a2191f", "#6929c4",
                "#b28600", "#1192e8", "#9f1853", "#005d5d"];

const ACTIVITY_BLOCKS = 300; // blocks in the signer columns and the block-time and throughput charts
const THROUGHPUT_WINDOW_S = 10;
const RECENT_COMMITS = 20; // "missing blocks": absent from 2 or more of the newest RECENT_COMMITS commits
const DOWN_AFTER = 3; // "down": absent from each of the newest DOWN_AFTER commits (one late precommit is not down)

const state = { status: null, height: -1, polls: 0, charts: {}, view: null, history: null, historyAt: 0,
                activity: null };

// ---------------------------------------------------------------- helpers
async function api(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  const doc = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(doc.error || `${r.status} on ${path}`);
  return doc;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const fmt = (x, digits = 4) => (typeof x === "number" && isFinite(x) ? Number(x.toPrecision(digits)).toString() : "–");
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "–");
const ago = (s) => (s === null || s === undefined ? "–" : s < 1 ? "just now" : `${s.toFixed(1)} s ago`);
const short = (s, n = 12) => (typeof s === "string" && s.length > n ? s.slice(0, n) + "…" : String(s ?? "–"));
const blockLink = (h) => el("a", { href: `#/block/${h}`, class: "block-link", text: String(h) });
const taskLink = (id) => el("a", { href: `#/task/${encodeURIComponent(id)}`, class: "task-link", title: id, text: short(id, 16) });

function table(headers, rows, attrs = {}) {
  const t = el("table", attrs);
  const head = el("tr");
  for (const h of headers) head.append(el("th", { class: h.num ? "num" : null, text: h.label ?? h }));
  t.append(el("thead", {}, head));
  const body = el("tbody");
  for (const r of rows) body.append(r);
  t.append(body);
  return t;
}

function row(cells, attrs = {}) {
  const tr = el("tr", attrs);
  for (const c of cells) {
    const num = typeof c === "number";
    tr.append(el("td", { class: num ? "num" : null }, c instanceof Node ? c : num ? fmt(c) : String(c ?? "–")));
  }
  return tr;
}

function panel(title, ...children) {
  return el("section", { class: "panel" }, el("h2", { text: title }), ...children);
}

function showError(msg) {
  const e = document.getElementById("error");
  e.hidden = !msg;
  e.textContent = msg || "";
}

// ---------------------------------------------------------------- summary cards (every view)
function renderSummary(st) {
  document.getElementById("chain").textContent =
    `${st.chain_id} · node ${st.name} · ${st.engine || ""} · allocator ${st.allocator || "–"}`;
  document.getElementById("height").textContent = st.height;
  document.getElementById("finality").textContent =
    st.height > 0 ? `final ${ago(st.last_commit_age)}` : "no block yet";
  document.getElementById("roundstep").textContent =
    st.round === null || st.round === undefined ? st.step || "idle" : `${st.round} / ${st.step}`;
  document.getElementById("mempool").textContent = st.mempool;
  document.getElementById("tasks-committed").textContent = st.tasks_committed;
  const vals = st.validators || [];
  const total = vals.reduce((a, v) => a + (v.power || 0), 0);
  const up = vals.reduce((a, v) => a + (v.reachable === false ? 0 : v.power || 0), 0);
  const q = document.getElementById("quorum");
  q.textContent = total ? `${up} / ${total}` + (3 * up > 2 * total ? "" : " (no quorum)") : "–";
  q.className = "value" + (total && 3 * up <= 2 * total ? " error" : "");
  const down = vals.filter((v) => v.reachable === false).map((v) => v.name);
  q.title = down.length ? `unreachable: ${down.join(", ")}` : "every validator reachable";
}

// ---------------------------------------------------------------- dashboard
function dashboardSkeleton() {
  const view = document.getElementById("view");
  view.replaceChildren(
    panel("Providers: signing, contribution, voting power, rewards", el("div", { id: "providers" })),
    el("div", { class: "grid2" },
      panel("Recent blocks",
            el("label", { class: "muted" }, onlyTasksBox(), " only blocks with tasks"), el("div", { id: "blocks" })),
      panel("Time between blocks and throughput (every block)", el("div", { class: "charts stacked", id: "block-charts" }))),
    panel("Over time (one point per block with tasks)", el("div", { class: "charts", id: "charts" })),
    el("div", { class: "grid2" },
      panel("Arbitrations", el("div", { id: "arbitrations" })),
      panel("Evidence", el("div", { id: "evidence" }))),
  );
  state.charts = {};
}

function onlyTasksBox() {
  const box = el("input", { type: "checkbox", id: "only-tasks" });
  box.checked = state.onlyTasks ?? true;
  box.addEventListener("change", () => { state.onlyTasks = box.checked; refreshDashboard(true); });
  return box;
}

// The commit of height h (who signed block h), carried by block h + 1: {height → last_commit}.
function commitsByHeight(activity) {
  const out = {};
  for (const b of activity?.blocks || []) if (b.last_commit) out[b.last_commit.height] = b.last_commit;
  return out;
}

function signedCell(commit) {
  if (!commit) return el("span", { class: "muted", title: "signatures arrive with the next block", text: "…" });
  const n = commit.signed.length, all = n + commit.absent.length;
  const text = commit.absent.length ? `${n}/${all} −${commit.absent.join(", ")}` : `${n}/${all}`;
  return el("span", {
    class: commit.absent.length ? "badge bad signers" : "signers", text,
    "data-signers": commit.signed.join(","), "data-absent": commit.absent.join(","),
    title: `signed by ${commit.signed.join(", ") || "nobody"}` +
           (commit.absent.length ? `; missing ${commit.absent.join(", ")}` : "") + ` (round ${commit.round ?? "–"})`,
  });
}

function renderBlocks(blocks) {
  const withRounds = blocks.some((b) => b.rounds !== null && b.rounds !== undefined); // engines that report them
  const commits = commitsByHeight(state.activity);
  const rows = blocks.map((b) => row([
    blockLink(b.height), when(b.time), b.proposer, b.n_tasks, b.total_latency,
    b.arbitrated ? el("span", { class: "badge", text: "arbitrated" }) : "", signedCell(commits[b.height]),
    ...(withRounds ? [b.rounds ?? "–"] : []),
  ], { "data-height": b.height, class: b.height > state.lastSeenTop ? "fresh" : null }));
  state.lastSeenTop = blocks.length ? blocks[0].height : state.lastSeenTop;
  document.getElementById("blocks").replaceChildren(table(
    ["height", "time", "proposer", { label: "tasks", num: 1 }, { label: "total latency", num: 1 }, "", "signed by",
     ...(withRounds ? ["rounds"] : [])],
    rows, { id: "blocks-table" }));
}

// A provider is down when this node cannot reach it or it signed none of the newest DOWN_AFTER commits; it
// is missing blocks when absent from 2 or more of the newest RECENT_COMMITS commits.
function liveness(name) {
  const sig = state.activity?.providers?.[name];
  const reach = (state.status?.validators || []).find((v) => v.name === name)?.reachable;
  const window = sig ? sig.signed + sig.missed : 0;
  const recent = (state.activity?.blocks || []).filter((b) => b.last_commit).slice(0, RECENT_COMMITS);
  const recentMissed = recent.filter((b) => b.last_commit.absent.includes(name)).length;
  const newest = recent.slice(0, DOWN_AFTER);
  const silent = newest.length === DOWN_AFTER && newest.every((b) => b.last_commit.absent.includes(name));
  const why = [];
  if (silent) {
    why.push(`signed none of the last ${DOWN_AFTER} commits`);
  } else if (sig && sig.signed_last === false) {
    why.push("did not sign the last commit");
  }
  if (reach === false) why.push("unreachable from this node");
  const detail = sig && window
    ? `missed ${recentMissed} of the last ${recent.length} commits and ${sig.missed} of the last ${window}; ` +
      `last signed height ${sig.last_signed ?? "none in the window"}`
    : "no commit seen yet";
  return { down: silent || reach === false, missing: recentMissed >= 2, title: [...why, detail].join("; "),
           missed: sig ? sig.missed : null, window, lastSigned: sig ? sig.last_signed : null };
}

function livenessCell(name) {
  const l = liveness(name);
  const text = l.down ? "down" : l.missing ? "missing blocks" : "up";
  return el("span", { class: `badge ${l.down ? "bad" : l.missing ? "warn" : "good"} liveness`, "data-liveness": text,
                      title: l.title, text });
}

function renderProviders(contrib, history) {
  const last = history.length ? history[history.length - 1] : null;
  const totalPower = contrib.validators.reduce((a, v) => a + (v.power || 0), 0);
  const rows = contrib.validators.map((v) => {
    const l = liveness(v.name);
    return row([
      v.name, livenessCell(v.name), l.window ? `${l.missed}/${l.window}` : "–", l.lastSigned ?? "–",
      v.score, v.power ?? "–", `${(100 * (v.proposer_share ?? (totalPower ? v.power / totalPower : 0))).toFixed(1)}%`,
      v.balance, v.penalties, v.qualified ? "yes" : el("span", { class: "badge bad", text: "no" }),
      last && last.backlog ? last.backlog[v.name] ?? 0 : "–",
      v.available === false ? el("span", { class: "badge bad", text: "no" }) : "yes",
      v.capacity_factor === undefined ? "–" : `${(100 * v.capacity_factor).toFixed(0)}%${v.capacity_measured ? "" : " (declared)"}`,
      v.receipts ?? "–", v.overdue ?? "–",
      v.audits_passed === undefined ? "–" : `${v.audits_passed} / ${v.audits_failed}`,
    ], { "data-provider": v.name, class: l.down || v.available === false ? "down" : null });
  });
  document.getElementById("providers").replaceChildren(table(
    ["provider", "signing", "commits missed", { label: "last signed", num: 1 },
     { label: "score", num: 1 }, { label: "power", num: 1 }, { label: "proposer share", num: 1 },
     { label: "rewards", num: 1 }, { label: "penalties", num: 1 }, "qualified", { label: "backlog (s)", num: 1 },
     "available", { label: "measured capacity", num: 1 }, { label: "receipts", num: 1 },
     { label: "tasks taken away", num: 1 }, { label: "audits passed / failed", num: 1 }],
    rows, { id: "providers-table" }));
}

// Block time (s between consecutive heights) and throughput (tasks committed in the THROUGHPUT_WINDOW_S
// before each block, per second), one point per block, over wall-clock time.
function blockSeries(activity) {
  const rows = (activity?.blocks || []).filter((b) => typeof b.time === "number").slice().reverse();
  const xs = [], dt = [], tput = [];
  let lo = 0, inWindow = 0;
  for (let i = 0; i < rows.length; i++) {
    const b = rows[i];
    inWindow += b.n_tasks;
    while (rows[lo].time <= b.time - THROUGHPUT_WINDOW_S) inWindow -= rows[lo++].n_tasks;
    const span = Math.min(THROUGHPUT_WINDOW_S, b.time - rows[0].time);
    xs.push(b.time);
    dt.push(i > 0 && rows[i - 1].height === b.height - 1 ? b.time - rows[i - 1].time : null);
    tput.push(span > 0 ? inWindow / span : null);
  }
  return { xs, dt, tput };
}

function renderBlockCharts(activity) {
  const box = document.getElementById("block-charts");
  if (!box) return;
  const { xs, dt, tput } = blockSeries(activity);
  if (xs.length < 2) {
    if (!box.querySelector(".empty")) box.replaceChildren(el("p", { class: "muted empty", text: "fewer than two blocks yet" }));
    return;
  }
  box.querySelector(".empty")?.remove();
  const width = Math.max(360, Math.min(640, box.clientWidth - 20));
  const specs = [
    { key: "blocktime", title: "Time between blocks (s)", data: [xs, dt], label: "block time", color: COLORS[0] },
    { key: "throughput", title: `Throughput (tasks/s over ${THROUGHPUT_WINDOW_S} s)`, data: [xs, tput],
      label: "tasks/s", color: COLORS[2] },
  ];
  for (const c of specs) {
    const ch = state.charts[c.key];
    if (ch) {
      ch.setData(c.data);
      continue;
    }
    const holder = el("div", { class: "chart", "data-chart": c.key }, el("h3", { text: c.title }));
    box.append(holder);
    state.charts[c.key] = new uPlot({
      width, height: 200, scales: { x: { time: true } },
      axes: [{}, {}],
      series: [{ label: "time" }, { label: c.label, stroke: c.color, width: 1.5, points: { show: false } }],
    }, c.data, holder);
  }
}

const CHARTS = [
  { key: "scores", title: "Contribution score", value: (r, n) => r.scores?.[n] },
  { key: "share", title: "Proposer share (voting power / total)",
    value: (r, n) => { const t = Object.values(r.powers || {}).reduce((a, b) => a + b, 0); return t ? r.powers[n] / t : null; } },
  { key: "rewards", title: "Rewards (cumulative balance)", value: (r, n) => r.rewards?.[n] },
  { key: "penalties", title: "Penalties (committed evidence)", value: (r, n) => r.penalties?.[n] },
  { key: "backlog", title: "Queue backlog after the block (s)", value: (r, n) => r.backlog?.[n] },
];

function renderCharts(history, names) {
  const box = document.getElementById("charts");
  if (!box) return;
  if (!history.length) {
    if (!box.querySelector(".empty")) box.replaceChildren(el("p", { class: "muted empty", text: "no block with tasks yet" }));
    return;
  }
  box.querySelector(".empty")?.remove();
  const xs = history.map((r) => r.height);
  const width = Math.max(360, Math.min(640, box.clientWidth - 20));
  for (const c of CHARTS) {
    const data = [xs, ...names.map((n) => history.map((r) => c.value(r, n) ?? null))];
    let ch = state.charts[c.key];
    if (ch && ch.series.length === names.length + 1) {
      ch.setData(data);
      continue;
    }
    ch?.destroy();
    const holder = el("div", { class: "chart", "data-chart": c.key }, el("h3", { text: c.title }));
    const old = box.querySelector(`[data-chart="${c.key}"]`);
    old ? old.replaceWith(holder) : box.append(holder);
    state.charts[c.key] = new uPlot({
      width, height: 220, scales: { x: { time: false } },
      axes: [{ label: "height" }, {}],
      series: [{ label: "height" }, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
    }, data, holder);
  }
}

function renderArbitrations(list) {
  const box = document.getElementById("arbitrations");
  if (!box) return;
  box.replaceChildren(list.length
    ? table(["height", "time", "proposer", "method", { label: "tasks", num: 1 }],
            list.map((a) => row([blockLink(a.height), when(a.time), a.proposer ?? "–", a.method ?? "–", a.n_tasks ?? 0])),
            { id: "arbitrations-table" })
    : el("p", { class: "muted", text: "none: every block so far was allocated by its proposer" }));
}

function renderEvidence(list) {
  const box = document.getElementById("evidence");
  if (!box) return;
  box.replaceChildren(list.length
    ? table(["kind", "validator", "height", "round", "committed in"],
            list.map((e) => row([e.kind ?? e.type ?? "–", short(e.validator ?? e.name, 12), e.height ?? "–", e.round ?? "–",
                                 e.committed_height ? blockLink(e.committed_height) : "pending"])),
            { id: "evidence-table" })
    : el("p", { class: "muted", text: "none" }));
}

async function refreshDashboard(force) {
  const st = state.status;
  if (!st) return;
  const slow = force || state.polls % SLOW_EVERY === 0;
  if (force || st.height !== state.height) {
    const onlyTasks = document.getElementById("only-tasks")?.checked ?? true;
    // the history (plots) is the heavy read: at most every HISTORY_MS while blocks commit
    const wantHistory = force || !state.history || Date.now() - state.historyAt >= HISTORY_MS;
    const [blocks, contrib, hist, activity] = await Promise.all([
      api(`/blocks?limit=15&with_tasks=${onlyTasks}`), api("/contributions"),
      wantHistory ? api("/history?limit=300") : Promise.resolve(null),
      api(`/activity?limit=${ACTIVITY_BLOCKS}`).catch(() => null)]); // an engine without it: no signer columns
    if (state.view !== "dashboard") return;
    state.height = st.height;
    if (hist) {
      state.history = hist.history;
      state.historyAt = Date.now();
    }
    if (activity) state.activity = activity;
    renderBlocks(blocks.blocks);
    renderProviders(contrib, state.history);
    if (hist) renderCharts(state.history, contrib.validators.map((v) => v.name));
    if (activity && wantHistory) renderBlockCharts(state.activity);
  }
  if (slow) {
    const [arb, ev] = await Promise.all([api("/arbitrations?limit=20"), api("/evidence")]);
    if (state.view !== "dashboard") return;
    renderArbitrations(arb.arbitrations);
    renderEvidence(ev.evidence);
  }
}

// ---------------------------------------------------------------- block and task views
async function showBlock(h) {
  const doc = await api(`/blocks/${encodeURIComponent(h)}`);
  const b = doc.block;
  const alloc = b.allocation || {};
  const providers = alloc.providers || (b.assignment || []).map(String);
  const lat = alloc.latencies || [];
  const tasks = b.tasks || [];
  const per = {};
  providers.forEach((p, i) => {
    per[p] ??= { n: 0, lat: 0 };
    per[p].n += 1;
    per[p].lat += lat[i] ?? 0;
  });
  const arb = b.arbitration;
  const info = el("dl", { class: "kv", id: "block-info" },
    el("dt", { text: "height" }), el("dd", { "data-field": "height", text: String(doc.height ?? b.height) }),
    el("dt", { text: "hash" }), el("dd", { "data-field": "hash", text: doc.hash }),
    el("dt", { text: "time" }), el("dd", { text: when(b.time) }),
    el("dt", { text: "proposer" }), el("dd", { text: b.proposer_name || short(b.proposer, 16) }),
    el("dt", { text: "tasks" }), el("dd", { "data-field": "n_tasks", text: String(tasks.length) }),
    el("dt", { text: "claimed total latency" }), el("dd", { text: fmt(alloc.claimed_latency ?? b.claimed_latency, 6) }),
    el("dt", { text: "arbitration" }), el("dd", { text: arb ? `by the arbiter (${arb.method || "teacher"})` : "none" }),
    el("dt", { text: "evidence" }), el("dd", { text: String((b.evidence || []).length) }),
  );
  const perRows = Object.entries(per).sort().map(([p, v]) => row([p, v.n, v.n ? v.lat / v.n : 0]));
  const shap = alloc.shapley || b.contributions || [];
  const view = document.getElementById("view");
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← dashboard" }), " · ",
       doc.height > 1 ? el("a", { href: `#/block/${doc.height - 1}`, text: "previous" }) : "", " · ",
       el("a", { href: `#/block/${(doc.height ?? b.height) + 1}`, text: "next" })),
    el("div", { class: "grid2" },
      panel(`Block ${doc.height ?? b.height}`, info),
      panel("Allocation per provider",
            table(["provider", { label: "tasks", num: 1 }, { label: "mean latency (s)", num: 1 }], perRows, { id: "allocation-table" }),
            shap.length ? el("p", { class: "muted", text: `Shapley value per validator: ${shap.map((x) => fmt(x)).join(", ")}` }) : "")),
    panel(`Tasks (${tasks.length})`, table(
      ["task", { label: "arrival", num: 1 }, "demand", "provider", { label: "latency (s)", num: 1 }],
      tasks.slice(0, 500).map((t, i) => row([t.id ? taskLink(t.id) : `#${i}`, t.arrival ?? "–",
        (t.demand || []).map((x) => fmt(x, 3)).join(", "), providers[i] ?? "–", lat[i] ?? "–"])),
      { id: "tasks-table" }),
      tasks.length > 500 ? el("p", { class: "muted", text: `first 500 of ${tasks.length}` }) : ""),
  );
}

async function showTask(id) {
  const t = await api(`/tasks/${encodeURIComponent(id)}`);
  const items = [["id", t.id], ["status", t.status]];
  if (t.status === "committed") {
    items.push(["block", blockLink(t.height)], ["provider", t.provider_name ?? String(t.provider)],
               ["latency", `${fmt(t.latency, 6)} s`], ["arrival (chain clock)", t.arrival !== undefined ? `${fmt(t.arrival, 8)} s` : "–"],
               ["committed at", when(t.committed_at ?? t.block_time)]);
  }
  if (t.reason) items.push(["reason", t.reason]);
  const dl = el("dl", { class: "kv", id: "task-info" });
  for (const [k, v] of items) dl.append(el("dt", { text: k }), el("dd", { "data-field": k }, v instanceof Node ? v : String(v ?? "–")));
  document.getElementById("view").replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← dashboard" })), panel(`Task ${short(t.id, 20)}`, dl));
}

// ---------------------------------------------------------------- routing and polling
async function route() {
  const [, kind, arg] = (location.hash || "#/").split("/");
  showError("");
  try {
    if (kind === "block" && arg) {
      state.view = "block";
      await showBlock(decodeURIComponent(arg));
    } else if (kind === "task" && arg) {
      state.view = "task";
      await showTask(decodeURIComponent(arg));
    } else {
      state.view = "dashboard";
      dashboardSkeleton();
      await refreshDashboard(true);
    }
  } catch (e) {
    showError(e.message);
  }
}

async function poll() {
  try {
    state.status = await api("/status");
    renderSummary(state.status);
    if (state.view === "dashboard") await refreshDashboard(false);
    showError("");
  } catch (e) {
    showError(`node unreachable: ${e.message}`);
  } finally {
    state.polls += 1;
    setTimeout(poll, POLL_MS);
  }
}

document.getElementById("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search-input").value.trim();
  if (!q) return;
  location.hash = /^\d{1,15}$/.test(q) || q === "latest" ? `#/block/${q}` : `#/task/${encodeURIComponent(q)}`;
});
window.addEventListener("hashchange", route);

state.lastSeenTop = Infinity;
state.status = await api("/status").catch(() => null);
if (state.status) renderSummary(state.status);
await route();
setTimeout(poll, POLL_MS);
