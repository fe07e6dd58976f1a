// The sampling-plan form: a plan (the sampler's JSON) drawn into labelled fields and read back, with each
// problem named beside its field before anything is sent. The sampler validates again (the one rule);
// this only spares a lead a round trip and says what is wrong in words.
import { h, fill, num } from "./console.js";

const $ = (id) => document.getElementById(id);
const CHANNELS = ["chat", "email", "voice", "social"];

// Each targeted rule: how it reads, and its one parameter (if any) as a form field.
// `percent` fields show 0..100 and send 0..1; `list` fields take comma-separated values.
export const RULES = {
  csat_at_most: { text: "CSAT at most", param: { key: "max", label: "score (1–5)", min: 1, max: 5, step: 1, initial: 2 } },
  nps_detractor: { text: "NPS detractor (0–6)" },
  escalated: { text: "Escalated" },
  reopened: { text: "Reopened" },
  new_agent: { text: "Agent is new", param: { key: "days", label: "within days of their first conversation", min: 1, max: 3650, step: 1, initial: 30 } },
  auto_score_below: { text: "AutoQA score below", param: { key: "threshold", label: "score (%)", min: 0, max: 100, percent: true, initial: 0.6 } },
  auto_fail: { text: "AutoQA auto-fail" },
  negative_sentiment: { text: "Negative sentiment", param: { key: "below", label: "sentiment below (%)", min: 0, max: 100, above: true, percent: true, initial: 0.5 } },
  predicted_dissatisfied: { text: "Predicted dissatisfied", param: { key: "at_least", label: "probability at least (%)", min: 0, max: 100, above: true, percent: true, initial: 0.5 } },
  handle_time_above: { text: "Handle time above", param: { key: "seconds", label: "seconds", min: 0, above: true, step: "any", initial: 900 } },
  channel: { text: "Channel is", param: { key: "channels", label: `channels (${CHANNELS.join(", ")})`, list: CHANNELS, initial: ["voice"] } },
  tag: { text: "Has a tag", param: { key: "tags", label: "tags, comma-separated", list: true, initial: ["vip"] } },
};

export const EXAMPLE = { plan_id: "random-5pct", kind: "random", name: "5% of every conversation", rate: 0.05, priority: 100 };

const pctOf = (x) => (x === null || x === undefined ? "" : String(+(100 * x).toFixed(4)));

function ruleText(r) {
  const spec = RULES[r.kind];
  if (!spec) return r.kind;
  if (!spec.param) return spec.text;
  const v = r[spec.param.key];
  return `${spec.text} ${spec.param.percent ? `${pctOf(v)}%` : Array.isArray(v) ? v.join(", ") : v}`;
}

// One line saying what a plan picks, for the plan list.
export function describe(p) {
  const where = p.scope && p.scope.channels ? ` (${p.scope.channels.join(", ")} only)` : "";
  if (p.kind === "random") return `${num(100 * p.rate, 1)}% of conversations at random${where}`;
  if (p.kind === "stratified") return `${p.quota} per ${p.by} each ${p.period}${where}`;
  if (p.kind === "targeted") {
    const share = p.rate < 1 ? `, ${pctOf(p.rate)}% of matches` : "";
    const floor = p.fallback ? `; at least ${p.fallback.min_per_period} per ${p.fallback.per} each ${p.fallback.period}` : "";
    return `${(p.rules || []).map(ruleText).join(" or ")}${share}${floor}${where}`;
  }
  return p.kind;
}

let ruleCount = 0;
let loadedScope = {}; // the edited plan's scope: fields the form does not show (tags) are kept as they were
function ruleRow(rule) {
  const n = ++ruleCount;
  const kind = h("select", { id: `rule-${n}-kind`, class: "rule-kind" }, Object.entries(RULES).map(([k, s]) => h("option", { value: k, selected: k === rule.kind }, s.text)));
  const paramBox = h("div", { class: "rule-param" });
  const row = h("div", { class: "rule", dataset: { n: String(n) } },
    h("div", {}, h("label", { for: kind.id }, "Rule"), kind),
    paramBox,
    h("button", { type: "button", class: "link", onclick: () => row.remove(), "aria-label": `Remove rule ${n}` }, "Remove"));
  function drawParam(value) {
    const spec = RULES[kind.value].param;
    if (!spec) return fill(paramBox);
    const shown = value === undefined ? spec.initial : value;
    const input = h("input", {
      id: `rule-${n}-param`,
      class: "rule-value",
      type: spec.list ? "text" : "number",
      min: spec.list ? null : spec.min,
      max: spec.list ? null : spec.max,
      step: spec.list ? null : spec.step || "any",
      value: spec.list ? shown.join(", ") : spec.percent ? pctOf(shown) : String(shown),
    });
    return fill(paramBox, h("label", { for: input.id }, spec.label), input);
  }
  kind.addEventListener("change", () => drawParam(undefined));
  drawParam(RULES[rule.kind] && RULES[rule.kind].param ? rule[RULES[rule.kind].param.key] : undefined);
  return row;
}

function kindOf() {
  return document.querySelector("input[name=kind]:checked").value;
}

function showKind() {
  const kind = kindOf();
  document.querySelectorAll("fieldset[data-kind]").forEach((f) => { f.hidden = f.dataset.kind !== kind; });
}

// Draws a plan (or the example, for a new plan) into the form.
export function writeForm(plan, editing) {
  const p = plan || EXAMPLE;
  $("p-id").value = p.plan_id;
  $("p-id").readOnly = Boolean(editing);
  $("p-name").value = p.name || "";
  $("p-priority").value = String(p.priority ?? 100);
  document.querySelectorAll("input[name=kind]").forEach((r) => {
    r.checked = r.value === p.kind;
    r.disabled = Boolean(editing) && r.value !== p.kind;
  });
  $("p-kind-hint").hidden = !editing;
  $("p-rate").value = p.kind === "random" ? pctOf(p.rate) : "5";
  $("p-quota").value = String(p.quota ?? 10);
  $("p-by").value = p.by || "agent";
  $("p-period").value = p.period || "week";
  $("p-slots").value = String(p.slots ?? 1);
  fill($("p-rules"), (p.kind === "targeted" ? p.rules : [{ kind: "csat_at_most", max: 2 }]).map(ruleRow));
  $("p-trate").value = p.kind === "targeted" ? pctOf(p.rate) : "100";
  $("p-fallback").checked = Boolean(p.fallback);
  $("p-min").value = String((p.fallback && p.fallback.min_per_period) ?? 5);
  $("p-fper").value = (p.fallback && p.fallback.per) || "tenant";
  $("p-fperiod").value = (p.fallback && p.fallback.period) || "week";
  $("p-fallback-fields").hidden = !p.fallback;
  loadedScope = p.scope || {};
  const channels = loadedScope.channels || [];
  document.querySelectorAll("input[name=channel]").forEach((c) => { c.checked = channels.includes(c.value); });
  showKind();
  clearProblems();
}

function clearProblems() {
  fill($("plan-problems"));
  document.querySelectorAll("#plan-form [aria-invalid]").forEach((el) => {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-errormessage");
  });
}

// Reads the form into the sampler's plan JSON: { plan } when valid, else { problems: [{el, message}] }.
export function readForm() {
  const problems = [];
  const bad = (el, message) => problems.push({ el, message });
  const number = (el, what, { min, max, above = false, integer = false, percent = false } = {}) => {
    const raw = el.value.trim();
    const v = Number(raw);
    if (raw === "" || !Number.isFinite(v)) return bad(el, `${what}: enter a number`), null;
    if (integer && !Number.isInteger(v)) return bad(el, `${what}: enter a whole number`), null;
    if (min !== undefined && (above ? v <= min : v < min)) return bad(el, `${what}: must be ${above ? "more than" : "at least"} ${min}`), null;
    if (max !== undefined && v > max) return bad(el, `${what}: must be at most ${max}`), null;
    return percent ? v / 100 : v;
  };
  const id = $("p-id").value.trim();
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(id)) bad($("p-id"), "Plan id: use 1–100 letters, digits, dots, dashes or underscores");
  const kind = kindOf();
  const plan = { plan_id: id, kind, name: $("p-name").value.trim(), priority: number($("p-priority"), "Priority", { min: 0, integer: true }) };
  const channels = [...document.querySelectorAll("input[name=channel]:checked")].map((c) => c.value);
  plan.scope = { ...loadedScope, channels: channels.length ? channels : null };
  if (kind === "random") plan.rate = number($("p-rate"), "Share of conversations", { min: 0, max: 100, percent: true });
  if (kind === "stratified") {
    plan.quota = number($("p-quota"), "Conversations per stratum", { min: 0, integer: true });
    plan.by = $("p-by").value;
    plan.period = $("p-period").value;
    plan.slots = number($("p-slots"), "Slots", { min: 1, max: 1000, integer: true });
    if (plan.slots !== null && plan.quota !== null && plan.slots > Math.max(plan.quota, 1)) bad($("p-slots"), `Slots: at most the quota (${plan.quota})`);
  }
  if (kind === "targeted") {
    const rows = [...document.querySelectorAll("#p-rules .rule")];
    if (!rows.length) bad($("p-add-rule"), "Rules: add at least one rule");
    plan.rules = rows.map((row, i) => {
      const k = row.querySelector(".rule-kind").value;
      const spec = RULES[k].param;
      const rule = { kind: k };
      if (spec) {
        const el = row.querySelector(".rule-value");
        const what = `Rule ${i + 1} (${RULES[k].text})`;
        if (spec.list) {
          const items = el.value.split(",").map((x) => x.trim()).filter(Boolean);
          const unknown = Array.isArray(spec.list) ? items.filter((x) => !spec.list.includes(x)) : [];
          if (!items.length) bad(el, `${what}: name at least one`);
          else if (unknown.length) bad(el, `${what}: ${unknown.join(", ")} is not one of ${spec.list.join(", ")}`);
          rule[spec.key] = items;
        } else {
          rule[spec.key] = number(el, what, { min: spec.min, max: spec.max, above: spec.above, integer: spec.step === 1, percent: spec.percent });
        }
      }
      return rule;
    });
    plan.rate = number($("p-trate"), "Share of matches", { min: 0, max: 100, above: true, percent: true });
    plan.fallback = $("p-fallback").checked
      ? { min_per_period: number($("p-min"), "Minimum per period", { min: 0, integer: true }), per: $("p-fper").value, period: $("p-fperiod").value }
      : null;
  }
  return problems.length ? { problems } : { plan };
}

// Marks each problem on its field (aria-invalid + a message it points to) and lists them; focuses the first.
export function showProblems(problems) {
  clearProblems();
  const items = problems.map((p, i) => {
    const id = `plan-problem-${i}`;
    p.el.setAttribute("aria-invalid", "true");
    p.el.setAttribute("aria-errormessage", id);
    return h("li", { id }, p.message);
  });
  fill($("plan-problems"), h("div", { class: "error", role: "alert" }, "Please check the plan:", h("ul", {}, items)));
  problems[0].el.focus();
}

export function wireForm() {
  document.querySelectorAll("input[name=kind]").forEach((r) => r.addEventListener("change", showKind));
  $("p-add-rule").addEventListener("click", () => {
    const row = ruleRow({ kind: "escalated" });
    $("p-rules").append(row);
    row.querySelector("select").focus();
  });
  $("p-fallback").addEventListener("change", () => { $("p-fallback-fields").hidden = !$("p-fallback").checked; });
}
