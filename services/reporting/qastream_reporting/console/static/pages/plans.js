import { api, empty, errorBox, fill, h, label, load, num, table, when, markLoaded } from "../console.js";

const $ = (id) => document.getElementById(id);
let plans = [];
let editing = null; // plan_id being edited, or null for a new plan
let picksLimit = 25;

const EXAMPLE = {
  plan_id: "random-5pct",
  kind: "random",
  name: "5% of every conversation",
  rate: 0.05,
};

function describe(p) {
  if (p.kind === "random") return `random, ${num(100 * p.rate, 1)}% of conversations`;
  if (p.kind === "targeted") return `targeted: ${(p.rules || []).map((r) => label(r.kind || r.rule || "rule")).join(", ") || "rules"}`;
  if (p.kind === "stratified") return `stratified by ${label(p.stratum || p.by || "agent")}`;
  return label(p.kind);
}

function edit(p) {
  editing = p ? p.plan_id : null;
  const { version, created_at, ...body } = p || EXAMPLE;
  $("plan-json").value = JSON.stringify(p ? body : EXAMPLE, null, 2);
  fill($("plan-result"), h("p", { class: "hint" }, p ? `Editing ${p.plan_id} (version ${version}). Saving publishes version ${version + 1}.` : "A new plan: change the example and save."));
  $("plan-json").focus();
  void created_at;
}

async function toggle(p) {
  try {
    await api("sampler", `/v1/plans/${encodeURIComponent(p.plan_id)}/${p.paused ? "resume" : "pause"}`, { method: "POST" });
    await reload();
  } catch (err) {
    fill($("plan-result"), errorBox(err));
  }
}

async function list() {
  plans = await api("sampler", "/v1/plans");
  if (!plans.length) return empty("No sampling plans yet, so nothing goes to reviewers (AutoQA still scores every conversation). Create one below: the example picks 5% at random.");
  return table("Current version of each plan", [
    { key: "plan_id", label: "Plan", render: (p) => h("span", {}, h("strong", {}, p.name || p.plan_id), h("div", { class: "hint" }, p.plan_id)) },
    { key: "kind", label: "What it picks", render: describe },
    { key: "version", label: "Version", numeric: true },
    { key: "paused", label: "State", render: (p) => h("span", { class: `badge ${p.paused ? "bad" : "good"}` }, p.paused ? "paused" : "active") },
    {
      key: "priority",
      label: "Actions",
      render: (p) => h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => edit(p), "aria-label": `Edit ${p.plan_id}` }, "Edit"),
        h("button", { type: "button", class: "secondary", onclick: () => toggle(p), "aria-label": `${p.paused ? "Resume" : "Pause"} ${p.plan_id}` }, p.paused ? "Resume" : "Pause"),
        h("button", { type: "button", class: "link", onclick: () => load($("picks"), () => picks(p.plan_id)) }, "Recent picks")),
    },
  ], plans);
}

async function picks(planId) {
  const rows = await api("sampler", "/v1/samples", { params: { purpose: "manual", plan_id: planId, limit: picksLimit } });
  $("picks-more").hidden = rows.length < picksLimit;
  if (!rows.length) return empty(planId ? `Plan ${planId} has picked nothing yet.` : "Nothing picked for people yet. Picks appear here as plans choose conversations.");
  return table(planId ? `Recent picks of ${planId}` : "Recent picks for people, newest first", [
    { key: "decided_at", label: "When", render: (r) => when(r.decided_at) },
    { key: "conversation_id", label: "Conversation" },
    { key: "plan_id", label: "Plan", render: (r) => `${r.plan_id} v${r.plan_version}` },
    { key: "inclusion_probability", label: "Inclusion probability", numeric: true, render: (r) => num(r.inclusion_probability, 3) },
    { key: "reason", label: "Why picked", render: (r) => r.reason || label(r.rule) || "–" },
  ], rows);
}

$("plan-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  let body;
  try {
    body = JSON.parse($("plan-json").value);
  } catch (err) {
    fill($("plan-result"), errorBox(new Error(`The plan is not valid JSON: ${err.message}`)));
    return;
  }
  try {
    const saved = editing
      ? await api("sampler", `/v1/plans/${encodeURIComponent(editing)}`, { method: "PUT", body })
      : await api("sampler", "/v1/plans", { method: "POST", body });
    fill($("plan-result"), h("p", { class: "notice" }, `Saved ${saved.plan_id} version ${saved.version}.`));
    editing = saved.plan_id;
    await reload();
  } catch (err) {
    fill($("plan-result"), errorBox(err));
  }
});
$("plan-new").addEventListener("click", () => edit(null));
$("picks-more").addEventListener("click", () => {
  picksLimit += 50;
  load($("picks"), () => picks(null));
});

function reload() {
  return load($("plan-list"), list);
}
Promise.all([reload(), load($("picks"), () => picks(null))]).then(() => { markLoaded(); });
edit(null);
