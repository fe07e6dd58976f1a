import { api, ask, empty, errorBox, fill, h, label, load, me, when, markLoaded } from "../console.js";
import { transcript } from "../transcript.js";

const $ = (id) => document.getElementById(id);
let current = null; // the open assignment
let openedAt = null;
let saveTimer = null;
let comments = []; // per-turn and whole-conversation comments
let selected = 0; // the category keyboard shortcuts act on

function scale(cat) {
  const k = cat.scale.kind;
  if (k === "binary") return [0, 1];
  if (k === "points") return Array.from({ length: (cat.scale.max_points || 0) + 1 }, (_, i) => i);
  return Array.from({ length: Number(k[0]) }, (_, i) => i + 1);
}

function valueLabel(cat, v) {
  if (cat.scale.kind === "binary") return v ? "yes" : "no";
  return String(v);
}

function negative(cat, v) {
  const values = scale(cat);
  const lo = values[0], hi = values[values.length - 1];
  return hi > lo && (v - lo) / (hi - lo) < 0.5;
}

async function queue() {
  const page = await api("scoring", "/v1/assignments", { params: { status: "open", reviewer_id: me.agent_id, limit: 50 } });
  if (!page.items.length) return empty("Your queue is empty. Take the next assignment to claim one from the pool.");
  return h("ul", {}, page.items.map((a) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => open(a.assignment_id) }, `${a.conversation_id}`), ` · ${a.plan_id ? `plan ${a.plan_id}` : "assigned"} · ${when(a.created_at)}`)));
}

async function next() {
  const a = await api("scoring", "/v1/assignments/next");
  if (a === null) {
    fill($("assignment"), empty("Nothing to review right now: no open assignment and the pool is empty. New ones arrive as sampling plans pick conversations."));
    $("work").hidden = true;
    return;
  }
  await open(a.assignment_id);
}

function ratingsFromForm() {
  const form = $("scorecard-form");
  return current.cats.flatMap((cat) => {
    const chosen = form.querySelector(`input[name="v-${cat.category_id}"]:checked`);
    if (!chosen) return [];
    const value = chosen.value === "na" ? null : Number(chosen.value);
    const causes = [...form.querySelectorAll(`input[name="rc-${cat.category_id}"]:checked`)].map((x) => x.value);
    const comment = form.querySelector(`#c-${cat.category_id}`).value.trim();
    return [{ category_id: cat.category_id, value, root_causes: value !== null && negative(cat, value) ? causes : [], comment: comment || null }];
  });
}

function body() {
  return { ratings: ratingsFromForm(), comments: comments.filter((c) => c.text.trim()) };
}

// Drafts are saved as the reviewer works: 700 ms after the last change.
function changed() {
  showRootCauses();
  clearTimeout(saveTimer);
  fill($("draft-status"), "Unsaved changes…");
  saveTimer = setTimeout(saveDraft, 700);
}

async function saveDraft() {
  try {
    const saved = await api("scoring", `/v1/assignments/${encodeURIComponent(current.assignment_id)}/draft`, { method: "PUT", body: body() });
    fill($("draft-status"), `Draft saved ${when(saved.saved_at)}`);
    $("draft-status").dataset.saved = saved.saved_at;
  } catch (err) {
    fill($("draft-status"), errorBox(err));
  }
}

function showRootCauses() {
  for (const cat of current.cats) {
    const chosen = document.querySelector(`input[name="v-${cat.category_id}"]:checked`);
    const box = document.getElementById(`rcbox-${cat.category_id}`);
    if (box) box.hidden = !(chosen && chosen.value !== "na" && negative(cat, Number(chosen.value)));
  }
}

function categoryField(cat, i, draft) {
  const prior = draft.get(cat.category_id);
  const choices = scale(cat).map((v) =>
    h("label", {}, h("input", { type: "radio", name: `v-${cat.category_id}`, value: String(v), checked: prior && prior.value === v }), valueLabel(cat, v)));
  if (cat.allow_na) choices.push(h("label", {}, h("input", { type: "radio", name: `v-${cat.category_id}`, value: "na", checked: prior && prior.value === null }), "N/A"));
  const auto = current.auto.get(cat.category_id);
  return h("div", { class: "category", id: `cat-${i}`, tabindex: "-1", dataset: { index: i } },
    h("fieldset", {},
      h("legend", {}, `${i + 1}. ${cat.name}${cat.critical ? " (critical)" : ""} · weight ${cat.weight}`),
      cat.description ? h("div", { class: "hint" }, cat.description) : null,
      h("div", { class: "choices" }, choices)),
    auto && !current.blindAuto ? h("div", { class: "provenance" }, `AutoQA suggests ${auto.value === null ? "N/A" : valueLabel(cat, auto.value)} (${auto.provenance ? `${auto.provenance.scorer}, confidence ${Math.round(100 * auto.provenance.confidence)}%` : "no provenance"})`) : null,
    cat.root_cause_tags.length
      ? h("fieldset", { id: `rcbox-${cat.category_id}`, hidden: true },
          h("legend", { class: "hint" }, "Root causes"),
          h("div", { class: "choices" }, cat.root_cause_tags.map((t) => h("label", {}, h("input", { type: "checkbox", name: `rc-${cat.category_id}`, value: t, checked: prior && (prior.root_causes || []).includes(t) }), label(t)))))
      : null,
    h("label", { for: `c-${cat.category_id}` }, "Comment (optional)"),
    h("textarea", { id: `c-${cat.category_id}`, rows: 2 }, prior && prior.comment ? prior.comment : ""),
  );
}

async function turnComment(turn) {
  const text = await ask({ title: `Comment on turn ${turn + 1}`, fieldLabel: "Comment", hint: "Shown beside this turn on the submitted review.", confirm: "Add comment" });
  if (!text) return;
  comments.push({ turn, text });
  renderComments();
  changed();
}

function renderComments() {
  const list = $("turn-comments");
  if (!list) return;
  fill(list, comments.length ? h("ul", {}, comments.map((c, i) => h("li", {}, `${c.turn === null ? "Conversation" : `Turn ${c.turn + 1}`}: ${c.text} `,
    h("button", { type: "button", class: "link", onclick: () => { comments.splice(i, 1); renderComments(); changed(); } }, "remove")))) : empty("No turn comments. Use “Comment on turn” beside a turn."));
}

function tick() {
  if (!openedAt) return;
  const s = Math.round((Date.now() - openedAt) / 1000);
  fill($("timer"), `Time on this review: ${Math.floor(s / 60)} min ${s % 60} s`);
}
setInterval(tick, 1000);

async function open(id) {
  const a = await api("scoring", `/v1/assignments/${encodeURIComponent(id)}`);
  const cats = a.scorecard ? a.scorecard.groups.flatMap((g) => g.categories) : [];
  current = { ...a, cats, auto: new Map((a.auto_ratings || []).map((r) => [r.category_id, r])), blindAuto: false };
  openedAt = Date.now();
  const draft = new Map(((a.draft && a.draft.ratings) || []).map((r) => [r.category_id, r]));
  comments = ((a.draft && a.draft.comments) || []).map((c) => ({ ...c }));
  fill($("assignment"),
    h("p", {}, h("strong", {}, `Conversation ${a.conversation_id}`), " · ",
      a.agent_id ? `agent ${a.agent_id}` : h("span", { class: "badge" }, "Blind review: the agent is hidden"),
      ` · scorecard ${a.scorecard_id} v${a.scorecard_version}`),
    h("h3", {}, "Turn comments"), h("div", { id: "turn-comments" }));
  renderComments();
  const t = transcript((a.conversation && a.conversation.turns) || [], new Set(), [], { onComment: turnComment });
  fill($("work-transcript"), a.conversation ? t.node : empty("The transcript is not stored for this conversation."));
  const form = $("scorecard-form");
  fill(form, cats.length ? cats.map((c, i) => categoryField(c, i, draft)) : empty("This scorecard version has no categories."),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "submit-review" }, "Submit review"), h("button", { type: "button", class: "secondary", id: "skip" }, "Skip")),
    h("div", { id: "submit-result", role: "status" }));
  $("skip").addEventListener("click", skip);
  showRootCauses();
  fill($("draft-status"), a.draft ? "Draft restored." : "");
  $("work").hidden = false;
  selected = 0;
  tick();
}

async function submit(e) {
  if (e) e.preventDefault();
  clearTimeout(saveTimer);
  const out = $("submit-result");
  try {
    const review = await api("scoring", `/v1/assignments/${encodeURIComponent(current.assignment_id)}/review`, {
      method: "POST",
      body: { ...body(), time_spent_s: Math.round((Date.now() - openedAt) / 1000) },
      headers: { "Idempotency-Key": `console-${current.assignment_id}` },
    });
    openedAt = null;
    fill(out, h("p", { class: "notice" }, "Review submitted: score ", h("strong", { "data-metric": "submitted-score" }, review.score === null ? "–" : `${(100 * review.score).toFixed(1)}%`), ". ",
      h("a", { href: `/reviews/${encodeURIComponent(review.review_id)}` }, "Open it"), " or take the next one."));
    await load($("queue"), queue);
  } catch (err) {
    fill(out, errorBox(err));
  }
}

async function skip() {
  const reason = await ask({ title: "Skip this conversation", fieldLabel: "Why skip it?", hint: "The reason is kept with the assignment.", confirm: "Skip it" });
  if (!reason) return;
  try {
    await api("scoring", `/v1/assignments/${encodeURIComponent(current.assignment_id)}/skip`, { method: "POST", body: { reason } });
    $("work").hidden = true;
    fill($("assignment"), empty("Skipped. Take the next assignment."));
    await load($("queue"), queue);
  } catch (err) {
    fill($("submit-result"), errorBox(err));
  }
}

function select(i) {
  if (!current || !current.cats.length) return;
  selected = Math.max(0, Math.min(current.cats.length - 1, i));
  const el = document.getElementById(`cat-${selected}`);
  el.focus();
  el.scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (e) => {
  if (!current || $("work").hidden || (e.target.closest && e.target.closest("dialog"))) return;
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
    submit(e);
    return;
  }
  const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(e.target.tagName) && e.target.type !== "radio" && e.target.type !== "checkbox";
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  const focused = e.target.closest && e.target.closest(".category");
  if (focused) selected = Number(focused.dataset.index);
  const cat = current.cats[selected];
  if (e.key === "j") select(selected + 1);
  else if (e.key === "k") select(selected - 1);
  else if (cat && (e.key === "n" || /^[0-9]$/.test(e.key))) {
    const value = e.key === "n" ? "na" : e.key;
    const input = document.querySelector(`input[name="v-${cat.category_id}"][value="${value}"]`);
    if (input) {
      input.checked = true;
      changed();
      select(selected + 1);
    }
  } else return;
  e.preventDefault();
});

$("scorecard-form").addEventListener("input", changed);
$("scorecard-form").addEventListener("submit", submit);
$("take-next").addEventListener("click", () => next().catch((err) => fill($("assignment"), errorBox(err))));
load($("queue"), queue).then(() => { markLoaded(); });
