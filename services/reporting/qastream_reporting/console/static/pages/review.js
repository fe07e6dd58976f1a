import { ApiError, api, config, empty, errorBox, fill, h, label, load, me, pct, when, markLoaded } from "../console.js";
import { transcript } from "../transcript.js";

const reviewId = config.review_id;
const $ = (id) => document.getElementById(id);

function provenance(r) {
  const p = r.provenance;
  if (!p) return h("span", { class: "provenance" }, "rated by a person");
  return h("span", { class: "provenance" }, `AutoQA · ${p.scorer} ${p.version} · confidence ${pct(p.confidence, 0)}${p.error ? ` · scorer error: ${p.error}` : ""}`);
}

function ratingsList(review, card, highlight) {
  const names = new Map((card ? card.groups.flatMap((g) => g.categories) : []).map((c) => [c.category_id, c.name]));
  if (!review.ratings.length) return empty("This review has no ratings.");
  return h("ul", { class: "plain" }, review.ratings.map((r) => {
    const turns = ((r.provenance && r.provenance.evidence) || []).map((e) => e.turn);
    return h("li", { class: "category" },
      h("div", {}, h("strong", {}, names.get(r.category_id) || label(r.category_id)), " ",
        r.value === null ? h("span", { class: "badge" }, "N/A") : h("span", { class: `badge ${r.score >= 0.5 ? "good" : "bad"}` }, `${r.value} (${pct(r.score, 0)})`)),
      provenance(r),
      r.root_causes && r.root_causes.length ? h("div", {}, "Root causes: ", r.root_causes.map(label).join(", ")) : null,
      r.comment ? h("div", {}, `“${r.comment}”`) : null,
      turns.length ? h("button", { type: "button", class: "link", onclick: () => highlight(turns) }, `Show evidence (turn${turns.length > 1 ? "s" : ""} ${turns.map((t) => t + 1).join(", ")})`) : null,
    );
  }));
}

function disputeForm(review, card, reload) {
  if (!["agent", "team_lead", "admin"].includes(me.role)) return null;
  const cats = card ? card.groups.flatMap((g) => g.categories) : review.ratings.map((r) => ({ category_id: r.category_id, name: label(r.category_id) }));
  const out = h("div", { role: "status" });
  const form = h("form", { id: "open-dispute" },
    h("h3", {}, "Dispute this review"),
    h("label", { for: "dispute-category" }, "What do you dispute?"),
    h("select", { id: "dispute-category", name: "category_id" }, h("option", { value: "" }, "the whole review"), cats.map((c) => h("option", { value: c.category_id }, c.name))),
    h("label", { for: "dispute-reason" }, "Why"),
    h("textarea", { id: "dispute-reason", name: "reason", required: true, maxlength: 5000 }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Open dispute")),
    out,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    try {
      await api("scoring", `/v1/reviews/${encodeURIComponent(reviewId)}/disputes`, {
        method: "POST",
        body: { category_id: data.get("category_id") || null, reason: data.get("reason") },
      });
      fill(out, h("p", { class: "notice" }, "Dispute opened. The reviewer or a QA lead will resolve it."));
      form.reset();
      await reload();
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  return form;
}

async function main() {
  let history;
  try {
    history = await api("scoring", `/v1/reviews/${encodeURIComponent(reviewId)}/history`);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    history = { review: await api("scoring", `/v1/reviews/${encodeURIComponent(reviewId)}`), versions: [], disputes: [] };
  }
  const review = history.review;
  fill($("review-title"), review.kind === "auto" ? "(AutoQA)" : `(${label(review.kind)})`);
  fill($("crumbs"),
    me.role !== "agent" ? [h("a", { href: "/dashboard" }, "Dashboard"), " › "] : null,
    review.agent_id ? [h("a", { href: `/agents/${encodeURIComponent(review.agent_id)}` }, `Agent ${review.agent_id}`), " › "] : null,
    `Review ${review.review_id}`);
  fill($("review-summary"),
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Score"), h("div", { class: "stat-value", "data-metric": "score" }, pct(review.score))),
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Result"), h("div", { class: "stat-value" }, review.auto_failed ? "auto-fail" : review.passed ? "pass" : review.passed === false ? "below pass mark" : "–")),
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Agent"), h("div", { class: "stat-value" }, review.agent_id || "hidden")),
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Scorecard"), h("div", { class: "stat-value" }, `v${review.scorecard_version}`), review.scorecard_id),
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Submitted"), h("div", {}, when(review.submitted_at)), review.reviewer_id ? `by ${review.reviewer_id}` : "by AutoQA"),
  );
  let card = null;
  try {
    card = await api("scoring", `/v1/scorecards/${encodeURIComponent(review.scorecard_id)}/versions/${review.scorecard_version}`);
  } catch (err) {
    card = null;
  }
  const evidence = review.ratings.flatMap((r) => ((r.provenance && r.provenance.evidence) || []).map((e) => e.turn));
  let view = null;
  await load($("transcript"), async () => {
    try {
      const conv = await api("ingest", `/v1/conversations/${encodeURIComponent(review.conversation_id)}`);
      view = transcript(conv.turns || [], new Set(evidence), review.comments || []);
      return view.node;
    } catch (err) {
      if (err.status === 404) return empty("The transcript is no longer stored (the tenant's retention period has passed). Ratings and scores stay.");
      throw err;
    }
  });
  const highlight = (turns) => view && view.focus(turns);
  fill($("ratings"), ratingsList(review, card, highlight));
  const reload = () => main().catch((err) => fill($("ratings"), errorBox(err)));
  fill($("review-disputes"), history.disputes.length
    ? h("ul", {}, history.disputes.map((d) => h("li", {}, `${d.category_id ? label(d.category_id) : "whole review"}: ${label(d.status)} — “${d.reason}”`, d.comment ? ` · resolution: “${d.comment}”` : "", ` (${when(d.opened_at)})`)))
    : empty("No disputes on this review."));
  const form = disputeForm(review, card, reload);
  fill($("dispute-form"), form);
  fill($("history"), history.versions.length > 1
    ? h("ol", {}, history.versions.map((v) => h("li", {}, `Revision ${v.revision}: score ${pct(v.review.score)}${v.reason ? ` — ${v.reason}` : ""}`)))
    : empty("Not revised since it was submitted."));
  markLoaded();
}

main().catch((err) => fill($("ratings"), errorBox(err)));
