import { api, empty, errorBox, fill, h, label, load, num, table, when, markLoaded } from "../console.js";
import { EXAMPLE, describe, readForm, showProblems, wireForm, writeForm } from "../plan_form.js";

const $ = (id) => document.getElementById(id);
let plans = [];
let editing = null; // plan_id being edited, or null for a new plan
let picksLimit = 25;

const editingNote = (p) => `Editing ${p.plan_id} (version ${p.version}). Saving publishes version ${p.version + 1}.`;

function edit(p, { focus = true } = {}) {
  editing = p ? p.plan_id : null;
  writeForm(p, editing);
  const { version: _version, created_at: _created, ...body } = p || EXAMPLE;
  $("plan-json").value = JSON.stringify(p ? body : EXAMPLE, null, 2);
  fill($("plan-editing"), p ? editingNote(p) : "A new plan: adjust the example and save.");
  fill($("plan-result"));
  if (focus) (p ? $("p-name") : $("p-id")).focus();
}

// Pausing and resuming are edits too (a new version): the form's version note follows.
async function toggle(p) {
  try {
    const saved = await api("sampler", `/v1/plans/${encodeURIComponent(p.plan_id)}/${p.paused ? "resume" : "pause"}`, { method: "POST" });
    await reload();
    if (editing === saved.plan_id) fill($("plan-editing"), editingNote(saved));
    fill($("plan-result"), h("p", { class: "notice", role: "status" }, `${saved.paused ? "Paused" : "Resumed"} ${saved.plan_id} (version ${saved.version}).`));
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
    { key: "priority", label: "Priority", numeric: true },
    { key: "version", label: "Version", numeric: true },
    { key: "paused", label: "State", render: (p) => h("span", { class: `badge ${p.paused ? "bad" : "good"}` }, p.paused ? "paused" : "active") },
    {
      key: "actions",
      label: "Actions",
      render: (p) => h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => edit(p), "aria-label": `Edit ${p.plan_id}` }, "Edit"),
        h("button", { type: "button", class: "secondary", onclick: () => toggle(p), "aria-label": `${p.paused ? "Resume" : "Pause"} ${p.plan_id}` }, p.paused ? "Resume" : "Pause"),
        h("button", { type: "button", class: "link", onclick: () => load($("picks"), () => picks(p.plan_id)), "aria-label": `Recent picks of ${p.plan_id}` }, "Recent picks")),
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

// A new plan is created (POST); an edited one gets its next version (PUT with the whole plan).
async function save(body) {
  try {
    const saved = editing
      ? await api("sampler", `/v1/plans/${encodeURIComponent(editing)}`, { method: "PUT", body })
      : await api("sampler", "/v1/plans", { method: "POST", body });
    await reload();
    edit(saved, { focus: false });
    fill($("plan-result"), h("p", { class: "notice", role: "status" }, `Saved ${saved.plan_id} version ${saved.version}.`));
  } catch (err) {
    fill($("plan-result"), errorBox(err));
  }
}

$("plan-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const { plan, problems } = readForm();
  if (problems) return showProblems(problems);
  return save(plan);
});
$("plan-json-form").addEventListener("submit", (e) => {
  e.preventDefault();
  let body;
  try {
    body = JSON.parse($("plan-json").value);
  } catch (err) {
    fill($("plan-result"), errorBox(new Error(`The plan is not valid JSON: ${err.message}`)));
    return;
  }
  save(body);
});
$("plan-new").addEventListener("click", () => edit(null));
$("picks-more").addEventListener("click", () => {
  picksLimit += 50;
  load($("picks"), () => picks(null));
});

function reload() {
  return load($("plan-list"), list);
}
wireForm();
edit(null, { focus: false });
Promise.all([reload(), load($("picks"), () => picks(null))]).then(() => { markLoaded(); });
