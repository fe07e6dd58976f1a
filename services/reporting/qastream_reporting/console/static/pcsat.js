// pCSAT in the console (dashboard and agent pages): the predicted satisfaction beside the survey's, per
// scope, and the model's validity. Every figure is an API's (reporting's /v1/metrics/pcsat, scoring's
// /v1/pcsat/model); this only lays them out, keeping predicted and survey figures visibly apart.
import { allPages, api, empty, h, int, num, pct, reliabilityChart, rhoRange, stat, table } from "./console.js";

const PREDICTED = "pCSAT, predicted (1–5)";
const SURVEY = "CSAT, survey (1–5)";
const MAX_GROUPS = 1000;
const score = (x) => num(x, 2);
const weekOf = (iso) =>
  new Date(`${iso}T00:00:00Z`).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });

export const GROUPINGS = { team: "team", agent_id: "agent", week: "week" };

function agreement(a) {
  const n = h("span", { "data-metric": "pcsat_pairs" }, int(a.n));
  if (a.rho === null || a.rho === undefined) {
    return h("p", {}, "Too few conversations have both a prediction and a survey answer (n = ", n, ") to say how far pCSAT and survey CSAT agree.");
  }
  const ci = rhoRange(a);
  return h("p", {}, "Agreement with the survey: Spearman's ρ = ", h("span", { "data-metric": "pcsat_rho" }, num(a.rho)),
    ci ? [" (95% interval ", h("span", { "data-metric": "pcsat_rho_interval" }, ci), ")"] : "",
    " over n = ", n,
    ` conversations with both a prediction and an answer (${a.p_value < 0.001 ? "p < 0.001" : `p = ${num(a.p_value, 3)}`}).`);
}

// The scope's pCSAT, survey CSAT, survey coverage and their agreement.
export async function pcsatSummary(params) {
  const page = await api("reporting", "/v1/metrics/pcsat", { params });
  const r = (page.items && page.items[0]) || null;
  if (!r || !r.conversations) return empty("No conversations in this range yet. pCSAT appears as conversations are scored.");
  return h("div", {},
    h("div", { class: "stats" },
      stat(PREDICTED, h("span", { class: "predicted", "data-metric": "pcsat" }, score(r.pcsat)),
        ["on ", h("span", { "data-metric": "pcsat_predictions" }, int(r.pcsat_predictions)), " of ",
          h("span", { "data-metric": "pcsat_conversations" }, int(r.conversations)), ` conversations (${pct(r.pcsat_coverage)})`]),
      stat(SURVEY, h("span", { class: "survey", "data-metric": "pcsat_csat" }, score(r.csat)),
        [h("span", { "data-metric": "csat_responses" }, int(r.csat_responses)), " survey answers"]),
      stat("Survey coverage", h("span", { "data-metric": "survey_coverage" }, pct(r.survey_coverage)), "of conversations have a survey answer"),
    ),
    agreement(r.agreement),
  );
}

const FIRST = {
  team: { key: "team", label: "Team", render: (r) => r.team ?? "no team" },
  agent_id: { key: "agent_id", label: "Agent", render: (r) => h("a", { href: `/agents/${encodeURIComponent(r.agent_id)}` }, r.agent_id) },
  week: { key: "week", label: "Week of", render: (r) => h("time", { datetime: r.week }, weekOf(r.week)) },
};
const COLUMNS = [
  { key: "conversations", label: "Conversations", numeric: true, render: (r) => int(r.conversations) },
  { key: "pcsat", label: PREDICTED, numeric: true, render: (r) => h("span", { class: "predicted" }, score(r.pcsat)) },
  { key: "pcsat_predictions", label: "Predicted on", numeric: true, render: (r) => int(r.pcsat_predictions) },
  { key: "csat", label: SURVEY, numeric: true, render: (r) => h("span", { class: "survey" }, score(r.csat)) },
  { key: "csat_responses", label: "Survey answers", numeric: true, render: (r) => int(r.csat_responses) },
  { key: "survey_coverage", label: "Survey coverage", numeric: true, render: (r) => pct(r.survey_coverage) },
  { key: "rho", label: "Spearman ρ (95% interval; n)", numeric: true,
    render: (r) => {
      const ci = rhoRange(r.agreement);
      return `${num(r.rho)} (${ci ? `${ci}; ` : ""}n ${int(r.pairs)})`;
    } },
];

// The same figures per team, agent or week (every page of them), one row per group in the API's order.
export async function pcsatGroups(params, by, caption) {
  const rows = await allPages("reporting", "/v1/metrics/pcsat", { ...params, group_by: by }, MAX_GROUPS);
  if (!rows.length) return empty("No conversations in this range yet.");
  const flat = rows.map((r) => ({ ...r, rho: r.agreement.rho, pairs: r.agreement.n }));
  return h("div", { class: "pcsat-groups" }, table(caption || `pCSAT beside survey CSAT per ${GROUPINGS[by]}`, [FIRST[by], ...COLUMNS], flat));
}

// The model document changes with a deploy, not with the figures: asked once per page.
let model = null;
function modelDocument() {
  model ||= api("scoring", "/v1/pcsat/model").catch((err) => {
    model = null;
    throw err;
  });
  return model;
}

const AUCS = [
  ["Task not done", "task_not_done"],
  ["Not calm and helpful", "not_calm_helpful"],
];
const signed = (x) => (x > 0 ? "+" : "") + num(x, 3);
// A figure and its 95% interval; a model document without intervals (or too few answers for one) shows the figure.
const within = (x, ci) => (ci ? `${num(x, 3)} (${num(ci[0], 3)}–${num(ci[1], 3)})` : num(x, 3));
const apart = (d, ci) => (ci ? `${signed(d)} (${signed(ci[0])} to ${signed(ci[1])})` : signed(d));
// What the difference's interval lets a reader conclude: better only where the whole interval is on one side of 0.
const verdict = (ci) => (!ci ? "–" : ci[0] > 0 ? "pCSAT better" : ci[1] < 0 ? "review score better" : "no clear difference");
const aucRow = (v, what, q) => {
  const ci = (v.auc_intervals || {})[q] || {};
  const d = ci.difference ?? v[`auc_${q}`] - v[`review_score_auc_${q}`];
  return {
    what,
    pcsat: within(v[`auc_${q}`], ci.pcsat_ci95),
    review: within(v[`review_score_auc_${q}`], ci.review_score_ci95),
    difference: apart(d, ci.difference_ci95),
    verdict: verdict(ci.difference_ci95),
    n: v[`negatives_${q}`],
  };
};
const range = (b) => `${pct(b.lo, 0)}–${pct(b.hi, 0)}`;

// How far to trust pCSAT: the model's figures on the half of its labelled data it was not fitted on.
export async function pcsatValidity() {
  const doc = await modelDocument();
  const held = Object.entries(doc.validity || {}).find(([, v]) => v.fitted === false);
  if (!held) return empty(`Model ${doc.version} publishes no figures measured on data it was not fitted on.`);
  const [half, v] = held;
  const bins = v.reliability.filter((b) => b.n);
  const top = bins[bins.length - 1];
  const points = bins.map((b) => ({
    x: b.mean_predicted,
    y: b.observed,
    n: b.n,
    label: `Predicted ${range(b)} likely dissatisfied: ${int(b.n)} conversations, ${pct(b.mean_predicted)} predicted on average, ${pct(b.observed)} were`,
  }));
  return h("div", { class: "split" }, h("div", {},
    h("p", {}, "Model ", h("strong", { "data-metric": "pcsat_model_version" }, doc.version),
      ", fitted on public STAR chats, not on your conversations. It predicts the chance a customer is ", h("em", {}, "dissatisfied"),
      ` (${doc.target.replace(/^dissatisfied:\s*/, "")}); the 1–5 figure restates that chance. The figures below are from the ${half} half: `,
      h("span", { "data-metric": "pcsat_labelled" }, int(v.labelled)), " labelled conversations it was not fitted on."),
    h("p", {}, "How well it tells unhappy customers apart, as AUC (0.5 is chance, 1 is perfect), beside the QA review score. ",
      "In brackets, the 95% interval: where another sample of this size would plausibly put the figure. ",
      "The fewer customers said so, the wider it is; where the difference's interval spans 0, these conversations cannot tell the two apart."),
    table("AUC per answer", [
      { key: "what", label: "Customer said" },
      { key: "pcsat", label: "pCSAT (95% interval)", numeric: true },
      { key: "review", label: "Review score (95% interval)", numeric: true },
      { key: "difference", label: "pCSAT − review score (95% interval)", numeric: true },
      { key: "verdict", label: "On these conversations" },
      { key: "n", label: "Said so (n)", numeric: true, render: (r) => int(r.n) },
    ], AUCS.map(([what, q]) => aucRow(v, what, q))),
    h("p", {}, `Brier score ${num(v.brier, 3)}, against ${num(v.brier_base_rate, 3)} for always predicting the base rate (${pct(v.dissatisfied_rate)} dissatisfied); lower is better.`)),
  h("div", {},
    h("figure", { class: "reliability-figure" },
      reliabilityChart(`Reliability of pCSAT on the ${half} half: predicted against observed share dissatisfied, per bin; the table below gives the same figures`,
        points, "predicted chance dissatisfied", "share dissatisfied"),
      h("figcaption", { class: "hint", "data-metric": "pcsat_reading" }, top
        ? `How to read it: of the ${int(top.n)} conversations predicted ${range(top)} likely dissatisfied (${pct(top.mean_predicted, 0)} on average), ${pct(top.observed, 0)} were. Dots on the diagonal came true as often as predicted; bins without conversations are left out.`
        : "No bin holds a conversation.")),
    h("details", {}, h("summary", {}, "The reliability bins as a table"),
      table("Reliability per bin", [
        { key: "lo", label: "Predicted", render: (b) => range(b) },
        { key: "n", label: "Conversations (n)", numeric: true, render: (b) => h("span", { "data-metric": "reliability_n" }, int(b.n)) },
        { key: "mean_predicted", label: "Mean predicted", numeric: true, render: (b) => pct(b.mean_predicted) },
        { key: "observed", label: "Observed", numeric: true, render: (b) => pct(b.observed) },
      ], bins))),
  );
}
