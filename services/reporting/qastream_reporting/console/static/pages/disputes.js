import { api, categoriesNamed, empty, errorBox, fill, h, label, load, me, table, when, markLoaded } from "../console.js";

const $ = (id) => document.getElementById(id);
// Figures carry category ids; people read the scorecard's names (fetched once, before the first draw).
const named = await categoriesNamed();
const RESOLVERS = ["reviewer", "qa_lead", "admin"];
let cursor = null;
let rows = [];

function values(cat) {
  const k = cat.scale.kind;
  if (k === "binary") return [0, 1];
  if (k === "points") return Array.from({ length: (cat.scale.max_points || 0) + 1 }, (_, i) => i);
  return Array.from({ length: Number(k[0]) }, (_, i) => i + 1);
}

async function resolveForm(d, cell) {
  const review = await api("scoring", `/v1/reviews/${encodeURIComponent(d.review_id)}`);
  const card = await api("scoring", `/v1/scorecards/${encodeURIComponent(review.scorecard_id)}/versions/${review.scorecard_version}`);
  const cats = card.groups.flatMap((g) => g.categories).filter((c) => !d.category_id || c.category_id === d.category_id);
  const current = new Map(review.ratings.map((r) => [r.category_id, r]));
  const id = d.dispute_id;
  const out = h("div", { role: "status" });
  const catSelect = h("select", { id: `cat-${id}` }, cats.map((c) => h("option", { value: c.category_id }, c.name)));
  const valueSelect = h("select", { id: `val-${id}` });
  const fillValues = () => {
    const cat = cats.find((c) => c.category_id === catSelect.value);
    const now = current.get(cat.category_id);
    fill(valueSelect, values(cat).map((v) => h("option", { value: String(v), selected: now && now.value === v }, String(v))), cat.allow_na ? h("option", { value: "na" }, "N/A") : null);
  };
  catSelect.addEventListener("change", fillValues);
  fillValues();
  const outcome = h("select", { id: `out-${id}` }, ["accepted", "partially_accepted", "rejected"].map((o) => h("option", { value: o }, label(o))));
  const ratingBox = h("div", { class: "filters" },
    h("div", {}, h("label", { for: `cat-${id}` }, "Category to re-rate"), catSelect),
    h("div", {}, h("label", { for: `val-${id}` }, "New rating"), valueSelect));
  outcome.addEventListener("change", () => { ratingBox.hidden = outcome.value === "rejected"; });
  const comment = h("textarea", { id: `com-${id}`, rows: 2 });
  const form = h("form", { class: "resolve" },
    h("div", { class: "filters" }, h("div", {}, h("label", { for: `out-${id}` }, "Outcome"), outcome)),
    ratingBox,
    h("label", { for: `com-${id}` }, "Comment (required to reject)"), comment,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Resolve dispute")), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ratings = outcome.value === "rejected" ? [] : [{ category_id: catSelect.value, value: valueSelect.value === "na" ? null : Number(valueSelect.value) }];
    try {
      await api("scoring", `/v1/disputes/${encodeURIComponent(id)}/resolve`, { method: "POST", body: { outcome: outcome.value, comment: comment.value.trim() || null, ratings } });
      fill(out, h("p", { class: "notice" }, `Resolved: ${label(outcome.value)}.`));
      setTimeout(() => reload(), 400);
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  fill(cell, form);
}

function view() {
  if (!rows.length) {
    const status = $("d-status").value;
    return empty(status === "open"
      ? (me.role === "agent" ? "You have no open disputes. To dispute a review, open it from My reviews." : "No open disputes. Agents open them from a review's page.")
      : "No disputes match.");
  }
  return table("Disputes, oldest first", [
    { key: "opened_at", label: "Opened", render: (d) => when(d.opened_at) },
    { key: "review_id", label: "Review", render: (d) => h("a", { href: `/reviews/${encodeURIComponent(d.review_id)}` }, d.review_id.slice(0, 12)) },
    { key: "agent_id", label: "Agent", render: (d) => d.agent_id || "–" },
    { key: "category_id", label: "About", render: (d) => (d.category_id ? named(d.category_id) : "whole review") },
    { key: "reason", label: "Reason" },
    { key: "status", label: "Status", render: (d) => h("span", { class: "badge", "data-status": d.status }, label(d.status)) },
    {
      key: "dispute_id",
      label: "Action",
      render: (d) => {
        if (d.status !== "open") return d.comment ? `“${d.comment}”${d.resolved_by ? ` — ${d.resolved_by}` : ""}` : "–";
        if (!RESOLVERS.includes(me.role)) return "waiting for the reviewer or a QA lead";
        const cell = h("div");
        cell.append(h("button", { type: "button", class: "secondary", onclick: () => resolveForm(d, cell).catch((err) => fill(cell, errorBox(err))) }, "Resolve…"));
        return cell;
      },
    },
  ], rows);
}

async function page(reset) {
  if (reset) {
    cursor = null;
    rows = [];
  }
  const status = $("d-status").value;
  const p = await api("scoring", "/v1/disputes", { params: { status, cursor, limit: 50 } });
  rows.push(...p.items);
  cursor = p.next_cursor;
  $("disputes-more").hidden = !cursor;
  return view();
}

function reload() {
  return load($("dispute-list"), () => page(true)).then(() => { markLoaded(); });
}

$("dispute-filters").addEventListener("submit", (e) => { e.preventDefault(); reload(); });
$("disputes-more").addEventListener("click", () => load($("dispute-list"), () => page(false)));
reload();
