import { api, categoriesNamed, empty, errorBox, fill, h, int, label, load, me, pct, table, when, markLoaded } from "../console.js";

const $ = (id) => document.getElementById(id);
// Figures carry category ids; people read the scorecard's names (fetched once, before the first draw).
const named = await categoriesNamed();
const LEADS = ["team_lead", "qa_lead", "admin"];
let cursor = null;
let rows = [];

function actionForm(task, cell, kind) {
  const id = `${kind}-${task.task_id}`;
  const text = h("textarea", { id, rows: 3, required: true });
  const out = h("div", { role: "status" });
  const form = h("form", {},
    h("label", { for: id }, kind === "complete" ? "Coaching notes" : "Reason for dismissing"), text,
    h("div", { class: "actions" }, h("button", { type: "submit", class: kind === "dismiss" ? "danger" : "" }, kind === "complete" ? "Complete task" : "Dismiss task")), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = kind === "complete" ? { notes: text.value.trim() } : { reason: text.value.trim() };
      await api("coaching", `/v1/tasks/${encodeURIComponent(task.task_id)}/${kind}`, { method: "POST", body });
      await reload();
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  fill(cell, form);
  text.focus();
}

async function act(task, action, cell) {
  try {
    await api("coaching", `/v1/tasks/${encodeURIComponent(task.task_id)}/${action}`, { method: "POST" });
    await reload();
  } catch (err) {
    fill(cell, errorBox(err));
  }
}

function actions(task) {
  const cell = h("div", { class: "actions" });
  // Only the coached agent acknowledges; leads confirm AutoQA-only tasks, complete and dismiss.
  if (task.needs_confirmation && LEADS.includes(me.role)) cell.append(h("button", { type: "button", onclick: () => act(task, "confirm", cell) }, "Confirm"));
  else if (task.status === "open" && me.role === "agent") cell.append(h("button", { type: "button", onclick: () => act(task, "acknowledge", cell) }, "Acknowledge"));
  else if (task.status === "open") cell.append(h("span", { class: "hint" }, "waiting for the agent to acknowledge"));
  if (task.status === "acknowledged" && LEADS.includes(me.role)) cell.append(h("button", { type: "button", onclick: () => actionForm(task, cell, "complete") }, "Complete…"));
  if ((task.status === "open" || task.status === "acknowledged") && LEADS.includes(me.role)) cell.append(h("button", { type: "button", class: "secondary", onclick: () => actionForm(task, cell, "dismiss") }, "Dismiss…"));
  if (!cell.childNodes.length) cell.append(task.impact && task.impact.difference !== undefined && task.impact.difference !== null ? `impact ${pct(task.impact.difference)}` : "–");
  return cell;
}

function view() {
  if (!rows.length) {
    return empty(me.role === "agent"
      ? "You have no coaching tasks. Tasks appear when a coaching rule flags one of your reviews."
      : "No coaching tasks match. Coaching rules open tasks from reviews below the pass mark or auto-fails.");
  }
  return table("Coaching tasks", [
    { key: "opened_at", label: "Opened", render: (t) => when(t.opened_at) },
    { key: "agent_id", label: "Agent" },
    { key: "category_id", label: "Category", render: (t) => named(t.category_id) || "–" },
    { key: "title", label: "Task", render: (t) => h("span", {}, t.title, h("div", { class: "hint" }, `rule ${t.rule_id} v${t.rule_version}`), t.notes ? h("div", {}, `Notes: ${t.notes}`) : null, t.dismiss_reason ? h("div", {}, `Dismissed: ${t.dismiss_reason}`) : null) },
    { key: "status", label: "Status", render: (t) => h("span", { class: "badge", "data-status": t.status }, label(t.status)) },
    { key: "due_at", label: "Due", render: (t) => when(t.due_at) },
    { key: "task_id", label: "Action", render: actions },
  ], rows);
}

async function page(reset) {
  if (reset) {
    cursor = null;
    rows = [];
  }
  const p = await api("coaching", "/v1/tasks", { params: { status: $("t-status").value, cursor, limit: 50 } });
  rows.push(...p.items);
  cursor = p.next_cursor;
  $("tasks-more").hidden = !cursor;
  return view();
}

async function impact() {
  if (me.role === "agent") return empty("Impact per rule is shown to leads.");
  const items = await api("coaching", "/v1/impact", { params: { by: "rule" } });
  if (!items.length) return empty("No completed task has been measured yet: impact compares the agent's category score over the reviews after the task with those before it.");
  return table("Mean change in the coached category's score", [
    { key: "rule", label: "Rule", render: (r) => label(r.rule) || "–" },
    { key: "tasks", label: "Tasks", numeric: true, render: (r) => int(r.tasks) },
    { key: "mean", label: "Mean change", numeric: true, render: (r) => pct(r.mean ?? r.mean_difference) },
    { key: "ci_low", label: "95% interval", render: (r) => (r.ci_low === null || r.ci_low === undefined ? "–" : `${pct(r.ci_low)} – ${pct(r.ci_high)}`) },
  ], items);
}

function reload() {
  return load($("task-list"), () => page(true)).then(() => { markLoaded(); });
}

$("task-filters").addEventListener("submit", (e) => { e.preventDefault(); reload(); });
$("tasks-more").addEventListener("click", () => load($("task-list"), () => page(false)));
reload();
load($("impact"), impact);
