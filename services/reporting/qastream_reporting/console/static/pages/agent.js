import { api, barChart, categoriesNamed, config, empty, errorBox, fill, h, int, label, load, pct, sizeBars, stat, table, when, markLoaded } from "../console.js";
import { pcsatGroups } from "../pcsat.js";

const agentId = config.agent_id;
const $ = (id) => document.getElementById(id);
let cursor = null;
let shown = [];

async function summary() {
  const [q, c] = await Promise.all([
    api("reporting", "/v1/metrics/quality", { params: { agent_id: agentId } }),
    api("reporting", "/v1/metrics/customer", { params: { agent_id: agentId } }),
  ]);
  const r = (q.items && q.items[0]) || {};
  const cu = (c.items && c.items[0]) || {};
  return [
    stat("IQS", h("span", { "data-metric": "iqs" }, pct(r.iqs))),
    stat("Pass rate", pct(r.pass_rate)),
    stat("Reviews", h("span", { "data-metric": "reviews" }, int(r.reviews))),
    stat("Auto-fail rate", pct(r.auto_fail_rate)),
    stat("CSAT", cu.csat === null || cu.csat === undefined ? "–" : Number(cu.csat).toFixed(2)),
  ];
}

async function categories() {
  const [page, named] = await Promise.all([
    api("reporting", "/v1/metrics/categories", { params: { agent_id: agentId, group_by: "category_id", limit: 200 } }),
    categoriesNamed(),
  ]);
  const node = barChart("Mean score per category", page.items.map((r) => ({ label: named(r.category_id), value: r.score })));
  queueMicrotask(() => sizeBars());
  return node;
}

async function reviews() {
  const page = await api("scoring", "/v1/reviews", { params: { agent_id: agentId, cursor, limit: 25 } });
  // The API narrows by role; the filter is kept here too, so a lead's view never mixes agents.
  shown.push(...page.items.filter((r) => r.agent_id === agentId));
  cursor = page.next_cursor;
  $("more-reviews").hidden = !cursor;
  if (!shown.length) return empty("No reviews of this agent yet. They appear as conversations are scored.");
  return table("Newest first", [
    { key: "submitted_at", label: "When", render: (r) => h("a", { href: `/reviews/${encodeURIComponent(r.review_id)}` }, when(r.submitted_at)) },
    { key: "kind", label: "Kind", render: (r) => label(r.kind) },
    { key: "score", label: "Score", numeric: true, render: (r) => pct(r.score) },
    { key: "passed", label: "Result", render: (r) => (r.auto_failed ? "auto-fail" : r.passed ? "pass" : r.passed === false ? "below pass mark" : "–") },
    { key: "conversation_id", label: "Conversation" },
  ], shown);
}

$("more-reviews").addEventListener("click", () => load($("agent-reviews"), reviews));
Promise.all([
  load($("agent-stats"), summary),
  load($("agent-categories"), categories),
  load($("agent-reviews"), reviews),
  load($("agent-pcsat"), () => pcsatGroups({ agent_id: agentId }, "week", `${agentId}'s pCSAT beside their survey CSAT, per week`)),
]).then(() => {
  sizeBars();
  markLoaded();
}).catch((err) => fill($("agent-stats"), errorBox(err)));
