import { api, categoriesNamed, empty, errorBox, fill, h, load, me, num, table, when, markLoaded } from "../console.js";
import { transcript } from "../transcript.js";

const $ = (id) => document.getElementById(id);
// Figures carry category ids; people read the scorecard's names (fetched once, before the first draw).
const named = await categoriesNamed();
const LEADS = ["qa_lead", "admin"];
const base = "/v1/calibrations";

function values(cat) {
  const k = cat.scale.kind;
  if (k === "binary") return [0, 1];
  if (k === "points") return Array.from({ length: (cat.scale.max_points || 0) + 1 }, (_, i) => i);
  return Array.from({ length: Number(k[0]) }, (_, i) => i + 1);
}

const alpha = (a) => (a === null || a === undefined ? "–" : num(a, 2));

async function list() {
  const page = await api("scoring", base, { params: { limit: 50 } });
  const items = page.items || page;
  if (!items.length) {
    return empty(LEADS.includes(me.role)
      ? "No calibration sessions yet. Create one below: pick a few conversations and at least two reviewers."
      : "You are in no calibration session yet. A QA lead invites you to one.");
  }
  return table("Sessions, newest first", [
    { key: "opened_at", label: "Opened", render: (s) => when(s.opened_at) },
    { key: "session_id", label: "Session", render: (s) => h("button", { type: "button", class: "link", onclick: () => show(s.session_id) }, `${(s.conversation_ids || []).length} conversations · ${s.session_id.slice(0, 8)}`) },
    { key: "participants", label: "Reviewers", render: (s) => (s.participants || []).join(", ") },
    { key: "deadline", label: "Deadline", render: (s) => when(s.deadline) },
    { key: "closed_at", label: "State", render: (s) => (s.closed_at ? `closed · α ${alpha((s.results || {}).alpha)}` : "open") },
  ], items);
}

// Where raters split: each (conversation, category) whose raters chose more than one value.
function splits(s) {
  const out = [];
  for (const c of s.conversations || []) {
    const byCategory = new Map();
    for (const r of c.ratings || []) {
      for (const rating of r.ratings || []) {
        if (!byCategory.has(rating.category_id)) byCategory.set(rating.category_id, {});
        byCategory.get(rating.category_id)[r.reviewer_id] = rating.value;
      }
    }
    for (const [category, values] of byCategory) {
      if (new Set(Object.values(values)).size > 1) out.push({ conversation_id: c.conversation_id, category_id: category, values });
    }
  }
  return out;
}

function results(s) {
  const r = s.results || {};
  const cats = Object.entries(r.alpha_by_category || {});
  const split = splits(s);
  return h("div", {},
    h("p", {}, "Overall Krippendorff's α: ", h("strong", { "data-metric": "alpha" }, alpha(r.alpha)), r.alpha === null || r.alpha === undefined ? " — too few paired ratings to compute it." : ""),
    cats.length ? table("α per category", [
      { key: 0, label: "Category", render: (c) => named(c[0]) },
      { key: 1, label: "α", numeric: true, render: (c) => alpha(c[1]) },
    ], cats) : null,
    Object.keys(r.alignment || {}).length ? table(`Alignment to the benchmark${s.benchmark_reviewer_id ? ` (${s.benchmark_reviewer_id})` : ""}`, [
      { key: 0, label: "Reviewer" },
      { key: 1, label: "Alignment", numeric: true, render: (c) => `${num(100 * c[1], 0)}%` },
    ], Object.entries(r.alignment)) : h("p", { class: "hint" }, "No benchmark reviewer was named, so there is no alignment score."),
    split.length ? table("Where reviewers split", [
      { key: "conversation_id", label: "Conversation" },
      { key: "category_id", label: "Category", render: (x) => named(x.category_id) },
      { key: "values", label: "Ratings", render: (x) => Object.entries(x.values).map(([who, v]) => `${who}: ${v === null ? "N/A" : v}`).join(", ") },
    ], split) : h("p", {}, "Every reviewer gave the same rating everywhere."),
  );
}

function rateForm(s, conversationId, card, conv, mine) {
  const cats = card.groups.flatMap((g) => g.categories);
  const out = h("div", { role: "status" });
  const form = h("form", {},
    cats.map((c) => h("div", { class: "category" }, h("fieldset", {}, h("legend", {}, c.name),
      h("div", { class: "choices" }, values(c).map((v) => h("label", {}, h("input", { type: "radio", name: `cv-${c.category_id}`, value: String(v), checked: mine && mine.get(c.category_id) === v, required: !c.allow_na }), String(v))),
        c.allow_na ? h("label", {}, h("input", { type: "radio", name: `cv-${c.category_id}`, value: "na" }), "N/A") : null)))),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Submit my blind ratings")), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ratings = cats.map((c) => {
      const chosen = form.querySelector(`input[name="cv-${c.category_id}"]:checked`);
      return { category_id: c.category_id, value: !chosen || chosen.value === "na" ? null : Number(chosen.value) };
    });
    try {
      await api("scoring", `${base}/${encodeURIComponent(s.session_id)}/reviews`, { method: "POST", body: { conversation_id: conversationId, ratings } });
      fill(out, h("p", { class: "notice" }, "Saved. You can now see the others' ratings of this conversation."));
      await show(s.session_id);
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  return h("div", { class: "split" }, h("div", {}, h("h3", {}, `Conversation ${conversationId}`), transcript((conv && conv.turns) || []).node), h("div", {}, h("h3", {}, "Your ratings"), form));
}

async function show(id) {
  $("session-card").hidden = false;
  await load($("session"), async () => {
    const s = await api("scoring", `${base}/${encodeURIComponent(id)}`);
    const parts = [h("p", {}, `${(s.conversation_ids || []).length} conversations · reviewers ${(s.participants || []).join(", ")} · deadline ${when(s.deadline)}`)];
    if (s.closed_at) {
      parts.push(results(s));
    } else {
      if (LEADS.includes(me.role)) {
        const out = h("div", { role: "status" });
        const close = async () => {
          try {
            await api("scoring", `${base}/${encodeURIComponent(id)}/close`, { method: "POST" });
            await show(id);
            await load($("session-list"), list);
          } catch (err) {
            fill(out, errorBox(err));
          }
        };
        parts.push(h("div", { class: "actions" }, h("button", { type: "button", onclick: close }, "Close session and compute α")), out);
      }
      if ((s.participants || []).includes(me.agent_id)) {
        const card = await api("scoring", `/v1/scorecards/${encodeURIComponent(s.scorecard_id)}/versions/${s.scorecard_version}`);
        for (const c of s.conversations || []) {
          const done = (c.ratings || []).find((r) => r.reviewer_id === me.agent_id);
          parts.push(done
            ? h("p", { class: "notice" }, `You rated ${c.conversation_id}. Others' ratings of it are shown to you now; α appears when the session closes.`)
            : rateForm(s, c.conversation_id, card, c.conversation, null));
        }
      } else {
        const rated = (s.conversations || []).map((c) => `${c.conversation_id}: ${(c.ratings || []).length} of ${(s.participants || []).length} rated`);
        parts.push(h("ul", {}, rated.map((x) => h("li", {}, x))));
      }
    }
    return h("div", {}, parts);
  });
  $("session").focus();
}

if (LEADS.includes(me.role)) {
  $("create-card").hidden = false;
  $("create-session").addEventListener("submit", async (e) => {
    e.preventDefault();
    const d = new FormData(e.target);
    const split = (x) => x.toString().split(",").map((v) => v.trim()).filter(Boolean);
    const deadline = d.get("deadline") ? new Date(d.get("deadline")).toISOString() : new Date(Date.now() + 7 * 86400000).toISOString();
    try {
      const body = { conversation_ids: split(d.get("conversations")), participants: split(d.get("participants")), deadline };
      if (d.get("benchmark")) body.benchmark_reviewer_id = d.get("benchmark").toString().trim();
      const s = await api("scoring", base, { method: "POST", body });
      fill($("create-result"), h("p", { class: "notice" }, `Session created; ${s.participants.length} reviewers can rate now.`));
      await load($("session-list"), list);
    } catch (err) {
      fill($("create-result"), errorBox(err));
    }
  });
}
load($("session-list"), list).then(() => { markLoaded(); });
