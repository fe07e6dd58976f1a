import {
  allPages, api, config, barChart, categoriesNamed, empty, errorBox, fill, h, int, lineChart, load, num, pct, rhoRange, scatter, serviceUrl, sizeBars, stat, table, markLoaded,
} from "../console.js";
import { pcsatGroups, pcsatSummary, pcsatValidity } from "../pcsat.js";

const form = document.getElementById("filters");
const $ = (id) => document.getElementById(id);
let passMark = null;
let agentCursors = [null];

// The same filters go to every metrics call, so each figure answers the same question.
function filters() {
  const data = new FormData(form);
  const out = {};
  for (const key of ["team", "channel", "scorecard_version"]) {
    const v = (data.get(key) || "").toString().trim();
    if (v) out[key] = v;
  }
  const days = data.get("range");
  if (days) {
    const from = new Date(Date.now() - (Number(days) - 1) * 86400000);
    out.from = from.toISOString().slice(0, 10);
  }
  return out;
}

// A metric gets the filters its API takes (config.metric_filters, from the API's own declaration): CSAT,
// pCSAT, disputes and coaching are not kept per scorecard version (nor disputes and coaching per channel).
function filtersOf(name) {
  const takes = new Set(config.metric_filters[name] || []);
  return Object.fromEntries(Object.entries(filters()).filter(([key]) => takes.has(key)));
}

const metrics = (name, params = {}) => api("reporting", `/v1/metrics/${name}`, { params: { ...filtersOf(name), ...params } });
const SHOWN = { quality: "IQS and pass rate", customer: "coverage and CSAT", "csat-correlation": "QA score vs CSAT", pcsat: "pCSAT", disputes: "disputes", coaching: "coaching" };

// Which figures a filter the user set does not narrow, in words beside the filters.
function showUnfiltered() {
  const notes = Object.keys(filters()).filter((key) => key !== "from").map((key) => {
    const whole = Object.keys(SHOWN).filter((name) => !(config.metric_filters[name] || []).includes(key));
    const what = key.replaceAll("_", " ");
    return whole.length ? `The ${what} filter does not apply to ${whole.map((name) => SHOWN[name]).join(", ")}: those figures cover every ${what}.` : null;
  }).filter(Boolean);
  const note = $("filters-note");
  note.hidden = !notes.length;
  fill(note, notes.join(" "));
}
const one = (page) => (page.items && page.items[0]) || null;

let lastFreshness = null;
function showFreshness(f) {
  if (f) lastFreshness = f;
  const f2 = lastFreshness;
  const live = $("live");
  const parts = [h("span", { class: "dot-live", "aria-hidden": "true" }), stream ? "Live" : polling ? "Refreshing every 10 s" : "Connecting to live updates"];
  if (f2 && f2.last_review_at) {
    parts.push(` · newest review reached these figures ${num(f2.lag_seconds, 1)} s after it was submitted`);
  } else {
    parts.push(" · no review has reached reporting yet");
  }
  parts.push(` · updated ${new Date().toLocaleTimeString("en-GB")}`);
  fill(live, parts);
}

async function headline() {
  const [quality, customer, design] = await Promise.all([metrics("quality"), metrics("customer"), metrics("design-weighted"), passMarkKnown]);
  showFreshness(quality.freshness);
  const q = one(quality) || {};
  const c = one(customer) || {};
  const d = one(design) || {};
  if (!performance.getEntriesByName("qa-meaningful").length) performance.mark("qa-meaningful");
  const ht = (d.hajek || {});
  fill(
    $("headline-stats"),
    stat("IQS", h("span", { "data-metric": "iqs" }, pct(q.iqs)), q.iqs_ci_low !== null && q.iqs_ci_low !== undefined ? `95% CI ${pct(q.iqs_ci_low)}–${pct(q.iqs_ci_high)}` : "too few reviews for an interval"),
    stat("Pass rate", h("span", { "data-metric": "pass_rate" }, pct(q.pass_rate)), passMark !== null ? `at or above the ${pct(passMark, 0)} pass mark` : null),
    stat("Auto-fail rate", h("span", { "data-metric": "auto_fail_rate" }, pct(q.auto_fail_rate))),
    stat("Reviews", h("span", { "data-metric": "reviews" }, int(q.reviews))),
    stat("Coverage by people", h("span", { "data-metric": "coverage_manual" }, pct(c.coverage_manual)), `AutoQA ${pct(c.coverage_auto)} of ${int(c.conversations)} conversations`),
    stat("CSAT", h("span", { "data-metric": "csat" }, num(c.csat, 2)), `${int(c.csat_responses)} answers`),
  );
  fill(
    $("design"),
    ht.estimate === null || ht.estimate === undefined
      ? empty("No human reviews with inclusion probabilities in this range. Sampling plans send conversations to reviewers; see Sampling plans.")
      : h(
          "div",
          {},
          h("p", { class: "stat-value", "data-metric": "design_weighted" }, pct(ht.estimate)),
          h("p", {}, `95% interval ${pct(ht.ci_low)} – ${pct(ht.ci_high)} (Hájek, weighted by each sample's inclusion probability), over ${int(d.reviews)} human reviews. The raw mean of the same reviews is ${pct((d.raw_mean || {}).mean)}.`),
        ),
  );
}

async function trend() {
  const [page] = await Promise.all([metrics("quality", { group_by: "day", limit: 400 }), passMarkKnown]);
  const points = page.items.filter((r) => r.iqs !== null).map((r) => ({ label: r.day, value: r.iqs }));
  return lineChart("IQS per day", points, passMark, passMark === null ? "" : `pass mark ${pct(passMark, 0)}`);
}

async function categories() {
  const [page, named] = await Promise.all([metrics("categories", { group_by: "category_id", limit: 200 }), categoriesNamed()]);
  const node = barChart("Mean score per category", page.items.map((r) => ({ label: named(r.category_id), value: r.score })));
  queueMicrotask(() => sizeBars($("categories")));
  return node;
}

async function agreement() {
  const [page, named] = await Promise.all([metrics("agreement", { group_by: "category_id", limit: 200 }), categoriesNamed()]);
  if (!page.items.length) return empty("No conversation has both an AutoQA and a human review yet. Agreement appears once reviewers submit reviews.");
  return table("AutoQA and human ratings of the same conversations", [
    { key: "category_id", label: "Category", render: (r) => named(r.category_id) },
    { key: "pairs", label: "Pairs", numeric: true, render: (r) => int(r.pairs) },
    { key: "exact_agreement", label: "Exact agreement", numeric: true, render: (r) => pct(r.exact_agreement) },
    { key: "mean_abs_difference", label: "Mean |difference|", numeric: true, render: (r) => num(r.mean_abs_difference) },
  ], page.items);
}

// One dot per agent (every agent in the filters, all pages): their IQS against their customers' mean CSAT.
const MAX_AGENTS_PLOTTED = 2000;
async function csat() {
  const [corr, byAgentQ, byAgentC] = await Promise.all([
    metrics("csat-correlation"),
    allPages("reporting", "/v1/metrics/quality", { ...filtersOf("quality"), group_by: "agent_id" }, MAX_AGENTS_PLOTTED),
    allPages("reporting", "/v1/metrics/customer", { ...filtersOf("customer"), group_by: "agent_id" }, MAX_AGENTS_PLOTTED),
  ]);
  const r = one(corr) || {};
  const ci = rhoRange(r);
  const csatOf = new Map(byAgentC.filter((x) => x.csat !== null).map((x) => [x.agent_id, x.csat]));
  const points = byAgentQ
    .filter((x) => x.iqs !== null && csatOf.has(x.agent_id))
    .map((x) => ({
      x: x.iqs,
      y: csatOf.get(x.agent_id),
      n: x.reviews,
      href: `/agents/${encodeURIComponent(x.agent_id)}`,
      label: `${x.agent_id}: IQS ${pct(x.iqs)}, mean CSAT ${num(csatOf.get(x.agent_id))} (${int(x.reviews)} reviews)`,
    }));
  return h(
    "div",
    {},
    h("p", { "data-metric": "csat_rho" }, r.rho === null || r.rho === undefined
      ? "Spearman's ρ appears once conversations have both a QA score and a CSAT answer."
      : `Spearman's ρ between a conversation's QA score and its CSAT: ${num(r.rho)}${ci ? ` (95% interval ${ci})` : ""} over ${int(r.n)} conversations (p = ${num(r.p_value, 3)}).`),
    scatter("Each agent's IQS against their customers' mean CSAT", points, "IQS", "mean CSAT"),
    points.length ? h("p", { class: "hint", "data-metric": "scatter_agents" }, `${int(points.length)} ${points.length === 1 ? "agent" : "agents"} with both an IQS and CSAT answers; a dot's size grows with the agent's reviews. Select a dot to open the agent.`) : null,
  );
}

async function disputes() {
  const d = one(await metrics("disputes")) || {};
  if (!d.opened) return empty("No disputes in this range. Agents dispute a review from its page; leads resolve them under Disputes.");
  return h("div", { class: "stats" },
    stat("Opened", h("span", { "data-metric": "disputes_opened" }, int(d.opened))),
    stat("Accepted", int(d.accepted), `${int(d.partially_accepted)} partly`),
    stat("Rejected", int(d.rejected)),
    stat("Dispute rate", pct(d.dispute_rate), "per human review"),
  );
}

async function coaching() {
  const [tasks, impact] = await Promise.all([metrics("coaching"), metrics("coaching-impact")]);
  const t = one(tasks) || {};
  const i = one(impact) || {};
  if (!t.tasks) return empty("No coaching tasks yet. Coaching rules open tasks when reviews fall below the pass mark; see Coaching.");
  return h("div", {},
    h("div", { class: "stats" },
      stat("Open", int(t.open)), stat("Acknowledged", int(t.acknowledged)), stat("Completed", int(t.completed)), stat("Dismissed", int(t.dismissed))),
    h("p", {}, i.measured
      ? `Impact of ${int(i.measured)} completed tasks: the coached category moved by ${pct(i.mean_difference)} on average; ${int(i.improved)} improved beyond their interval, ${int(i.worsened)} worsened.`
      : "Impact is measured once completed tasks have enough reviews after them."),
  );
}

function agentTable(rows, customers) {
  const byId = new Map(customers.map((c) => [c.agent_id, c]));
  const merged = rows.map((r) => ({ ...r, csat: (byId.get(r.agent_id) || {}).csat ?? null, coverage: (byId.get(r.agent_id) || {}).coverage_manual ?? null }));
  const search = agentSearch();
  if (!merged.length) return empty(search ? `No agent id contains “${search}” in this range.` : "No reviewed agents in this range yet. Reviews appear as conversations are scored.");
  return table("Agents (click a column to sort)", [
    { key: "agent_id", label: "Agent", render: (r) => h("a", { href: `/agents/${encodeURIComponent(r.agent_id)}` }, r.agent_id) },
    { key: "reviews", label: "Reviews", numeric: true, render: (r) => int(r.reviews) },
    { key: "iqs", label: "IQS", numeric: true, render: (r) => pct(r.iqs) },
    { key: "pass_rate", label: "Pass rate", numeric: true, render: (r) => pct(r.pass_rate) },
    { key: "auto_fail_rate", label: "Auto-fail", numeric: true, render: (r) => pct(r.auto_fail_rate) },
    { key: "csat", label: "CSAT", numeric: true, render: (r) => num(r.csat) },
    { key: "coverage", label: "Coverage", numeric: true, render: (r) => pct(r.coverage) },
  ], merged);
}

const agentSearch = () => $("agent-search").value.trim();

// The search is the server's (agent ids containing the text), so it covers every agent, not one page.
// A slower answer to an older search never replaces a newer one's: only the latest call draws.
let agentPage = { rows: [], customers: [], next: null };
let agentsAsked = 0;
async function agents(cursorIndex = agentCursors.length - 1) {
  const asked = ++agentsAsked;
  const cursor = agentCursors[cursorIndex];
  const search = { agent_contains: agentSearch() };
  const page = await metrics("quality", { group_by: "agent_id", limit: 25, cursor, ...search });
  const ids = page.items.map((r) => r.agent_id);
  const customers = ids.length ? await metrics("customer", { group_by: "agent_id", limit: 500, ...search }) : { items: [] };
  if (asked !== agentsAsked) return undefined;
  agentPage = { rows: page.items, customers: customers.items.filter((c) => ids.includes(c.agent_id)), next: page.next_cursor };
  $("agents-next").disabled = !page.next_cursor;
  $("agents-first").disabled = cursorIndex === 0;
  return agentTable(agentPage.rows, agentPage.customers);
}

// Asked for beside the figures, not before them: the first paint waits for the slowest call, not the sum.
async function loadPassMark() {
  try {
    const s = await api("scoring", "/v1/scoring-settings");
    passMark = s.settings.pass_mark;
  } catch (err) {
    passMark = null;
  }
}
const passMarkKnown = loadPassMark();

// The headline figures first and alone, then the rest of the page in parallel: fired together, the dozen
// other calls queue beside the three the headline needs on a busy server, and the first meaningful paint
// waits for them (profiled with bench.console at 1,000,000 reviews).
async function refresh({ agentsToo = true } = {}) {
  showUnfiltered();
  await load($("headline-stats"), async () => { await headline(); });
  const jobs = [
    load($("trend"), trend),
    load($("categories"), categories),
    load($("agreement"), agreement),
    load($("csat"), csat),
    load($("disputes"), disputes),
    load($("coaching"), coaching),
    load($("pcsat"), () => pcsatSummary(filtersOf("pcsat"))),
    load($("pcsat-groups"), () => pcsatGroups(filtersOf("pcsat"), $("pcsat-by").value)),
    load($("pcsat-validity"), pcsatValidity),
  ];
  if (agentsToo) jobs.push(load($("agents"), () => agents()));
  await Promise.all(jobs);
  sizeBars();
  markLoaded();
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  agentCursors = [null];
  refresh();
});
$("pcsat-by").addEventListener("change", () => load($("pcsat-groups"), () => pcsatGroups(filtersOf("pcsat"), $("pcsat-by").value)));
$("agents-next").addEventListener("click", () => {
  if (!agentPage.next) return;
  agentCursors.push(agentPage.next);
  load($("agents"), () => agents());
});
$("agents-first").addEventListener("click", () => {
  agentCursors = [null];
  load($("agents"), () => agents());
});
let searching = null;
$("agent-search").addEventListener("input", () => {
  clearTimeout(searching);
  searching = setTimeout(() => {
    agentCursors = [null];
    load($("agents"), () => agents()).then(() => { $("agents").dataset.search = agentSearch(); });
  }, 250);
});

// Live: reporting's SSE stream says when figures moved; refresh (at most every 2 s) without a reload.
let stream = null;
let polling = false;
let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await refresh({ agentsToo: false });
  }, 500);
}
function connect() {
  if (!window.EventSource) return poll();
  stream = new EventSource(serviceUrl("reporting", "/v1/stream"), { withCredentials: true });
  stream.onmessage = soon;
  for (const name of ["review", "metrics", "update", "freshness"]) stream.addEventListener(name, soon);
  stream.onerror = () => {
    if (stream && stream.readyState === EventSource.CLOSED) {
      stream = null;
      poll();
    }
  };
}
function poll() {
  polling = true;
  setInterval(() => refresh({ agentsToo: false }), 10000);
}
setInterval(() => showFreshness(null), 5000);

(async () => {
  try {
    await refresh();
    connect();
  } catch (err) {
    fill($("headline-stats"), errorBox(err));
  }
})();
