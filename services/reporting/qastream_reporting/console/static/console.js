// The console's shared helpers: the API client (session cookie + CSRF header), errors in words, DOM
// building without innerHTML (API data is never parsed as HTML), formatting and small SVG charts.

export const config = JSON.parse(document.getElementById("qa-config").textContent);
export const me = config.me;

export class ApiError extends Error {
  constructor(status, message, fields) {
    super(message);
    this.status = status;
    this.fields = fields || [];
  }
}

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
}

let signingOut = false;
const SERVICE_NAMES = { scoring: "scoring", sampler: "sampler", coaching: "coaching", reporting: "reporting", ingest: "ingest" };

export function serviceUrl(service, path) {
  const base = (config.services && config.services[service]) || "";
  return base.replace(/\/$/, "") + path;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

// Calls one service's API; resolves to the parsed body (null for 204) or throws ApiError in words.
export async function api(service, path, { method = "GET", body, params, headers = {} } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") {
    const csrf = cookie("qa_csrf");
    if (csrf) h["X-CSRF-Token"] = csrf;
  }
  let response;
  try {
    response = await fetch(serviceUrl(service, path) + query(params), {
      method,
      headers: h,
      credentials: "include",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `The ${SERVICE_NAMES[service] || service} service did not answer. Is it running? (${e.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && config.page !== "signin" && !signingOut) {
      window.location.assign("/signin?next=" + encodeURIComponent(window.location.pathname));
    }
    let detail = (data && (data.detail || data.title)) || response.statusText || "request failed";
    if (response.status === 404 && detail === "Not Found") {
      detail = `the ${service} service has no ${path} (is it running the current version?)`;
    }
    const words = {
      401: "You are signed out",
      403: "Not allowed",
      404: "Not found",
      409: "Conflict",
      422: "Please check the form",
      503: "Service unavailable",
    }[response.status] || `Error ${response.status}`;
    throw new ApiError(response.status, `${words}: ${detail}`, (data && data.errors) || []);
  }
  return data;
}

// Every page of a paged list (cursor paging), up to `max` items.
export async function allPages(service, path, params = {}, max = 1000) {
  const out = [];
  let cursor = null;
  do {
    const page = await api(service, path, { params: { ...params, cursor, limit: Math.min(100, max) } });
    out.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// A live refresh redraws a section while someone may be on it with the keyboard: the element they were on
// (known by its id or its link) takes the focus back in the new drawing, instead of leaving it on the body.
function focusKey(el) {
  if (el.id) return `#${CSS.escape(el.id)}`;
  const href = el.getAttribute("href");
  return href ? `${el.localName}[href="${CSS.escape(href)}"]` : null;
}

export function fill(container, ...children) {
  const active = document.activeElement;
  const key = active && active !== container && container.contains(active) ? focusKey(active) : null;
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  if (key) container.querySelector(key)?.focus();
  return container;
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

export function errorBox(err) {
  const box = h("div", { class: "error", role: "alert" }, err.message || String(err));
  if (err.fields && err.fields.length) {
    box.append(h("ul", {}, err.fields.map((f) => h("li", {}, `${f.field}: ${f.message}`))));
  }
  return box;
}

// The latest load of each container: a container loaded again (a live refresh, a changed grouping) before the
// earlier load's answer came shows the later one only, whatever order the answers arrive in.
const latestLoad = new WeakMap();

// Runs an async loader into a container: a loading note, then the content or the error in words.
export async function load(container, loader) {
  const ticket = {};
  latestLoad.set(container, ticket);
  container.setAttribute("aria-busy", "true");
  let content;
  try {
    content = await loader();
  } catch (err) {
    content = errorBox(err);
  }
  if (latestLoad.get(container) !== ticket) return;
  if (content !== undefined) fill(container, content);
  container.removeAttribute("aria-busy");
}

export function pageError(err) {
  const box = document.getElementById("page-error");
  box.textContent = err ? err.message || String(err) : "";
  box.hidden = !err;
}

export function notice(container, text) {
  fill(container, h("p", { class: "notice", role: "status" }, text));
}

export const pct = (x, digits = 1) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`);
export const num = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
// A correlation's 95% interval, e.g. "0.47 to 0.79" ("to", not a dash: a bound may be negative); null where
// the API gives none (too few pairs).
export const rhoRange = (a) => (a.ci_low === null || a.ci_low === undefined ? null : `${num(a.ci_low)} to ${num(a.ci_high)}`);
export const int = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en"));
export const when = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" }) : "–");
export const label = (s) => (s || "").replaceAll("_", " ");

// Category names from the tenant's scorecards (their latest versions), fetched once per page. Figures are
// keyed by category id; an id no current scorecard names (a retired category) is shown as the id.
let categoryNames = null;
export function categoriesNamed() {
  if (!categoryNames) {
    categoryNames = api("scoring", "/v1/scorecards")
      .then((cards) => new Map(cards.flatMap((c) => c.groups.flatMap((g) => g.categories.map((x) => [x.category_id, x.name])))))
      .catch(() => new Map());
  }
  return categoryNames.then((names) => (id) => (id ? names.get(id) || label(id) : null));
}

// A sortable table: columns [{key, label, render?, numeric?}], rows of objects.
export function table(caption, columns, rows, { onRow } = {}) {
  let sortKey = null;
  let ascending = true;
  const tbody = h("tbody");
  const heads = columns.map((c) => {
    const button = h("button", { type: "button", class: "sort", onclick: () => sortBy(c.key) }, c.label);
    return h("th", { scope: "col", "aria-sort": "none" }, button);
  });
  function draw() {
    const shown = [...rows];
    if (sortKey) {
      shown.sort((a, b) => {
        const x = a[sortKey];
        const y = b[sortKey];
        const cmp = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
        return ascending ? cmp : -cmp;
      });
    }
    fill(
      tbody,
      shown.map((r) =>
        h(
          "tr",
          {},
          columns.map((c) => h("td", { class: c.numeric ? "num" : "" }, c.render ? c.render(r) : r[c.key] ?? "–")),
        ),
      ),
    );
  }
  function sortBy(key) {
    ascending = sortKey === key ? !ascending : true;
    sortKey = key;
    columns.forEach((c, i) =>
      heads[i].setAttribute("aria-sort", c.key === key ? (ascending ? "ascending" : "descending") : "none"),
    );
    draw();
  }
  draw();
  return h("div", { class: "table-wrap" }, h("table", {}, h("caption", {}, caption), h("thead", {}, h("tr", {}, heads)), tbody));
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// A line chart of 0..1 values over days, with a dashed reference line (the pass mark).
export function lineChart(title, points, reference, referenceLabel) {
  const W = 600, H = 220, L = 44, R = 12, T = 12, B = 28;
  if (!points.length) return empty("No reviews in this range yet.");
  const xs = (i) => L + (points.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (points.length - 1));
  const ys = (v) => T + (1 - v) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s("line", { x1: L, x2: W - R, y1: ys(v), y2: ys(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: ys(v) + 4, "text-anchor": "end", class: "axis" }, `${v * 100}%`));
  }
  if (reference !== null && reference !== undefined) {
    svg.append(s("line", { x1: L, x2: W - R, y1: ys(reference), y2: ys(reference), class: "reference" }));
    svg.append(s("text", { x: W - R, y: ys(reference) - 4, "text-anchor": "end", class: "axis" }, referenceLabel));
  }
  const d = points.map((p, i) => `${i ? "L" : "M"}${xs(i).toFixed(1)},${ys(p.value).toFixed(1)}`).join(" ");
  svg.append(s("path", { d, class: "line" }));
  points.forEach((p, i) => {
    svg.append(s("circle", { cx: xs(i), cy: ys(p.value), r: 3, class: "dot" }, s("title", {}, `${p.label}: ${pct(p.value)}`)));
  });
  const first = points[0].label, last = points[points.length - 1].label;
  svg.append(s("text", { x: L, y: H - 8, class: "axis" }, first));
  svg.append(s("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "axis" }, last));
  return svg;
}

// Horizontal bars of 0..1 values, labelled.
export function barChart(title, bars) {
  if (!bars.length) return empty("Nothing rated in this range yet.");
  return h(
    "ul",
    { class: "bars", "aria-label": title },
    bars.map((b) =>
      h(
        "li",
        {},
        h("span", { class: "bar-label" }, b.label),
        h("span", { class: "bar-track" }, h("span", { class: "bar-fill", dataset: { w: Math.round(100 * (b.value || 0)) } })),
        h("span", { class: "bar-value" }, pct(b.value, 0)),
      ),
    ),
  );
}

// Widths through CSSOM, not style attributes: the CSP allows no inline styles.
export function sizeBars(root = document) {
  root.querySelectorAll(".bar-fill[data-w]").forEach((el) => {
    el.style.width = `${el.dataset.w}%`;
  });
}

// A scatter of (x, y) in 0..1 x 1..5 (QA score vs CSAT), one dot per point.
export function scatter(title, points, xLabel, yLabel, yMin = 1, yMax = 5) {
  if (!points.length) return empty("No conversation has both a QA score and a CSAT answer yet.");
  const W = 600, H = 250, L = 44, R = 12, T = 24, B = 36;
  const xs = (v) => L + v * (W - L - R);
  const ys = (v) => T + (1 - (v - yMin) / (yMax - yMin)) * (H - T - B);
  // Dots that link to pages make the chart a group of links, not one image (an image's children are hidden).
  const role = points.some((p) => p.href) ? "group" : "img";
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role, "aria-label": title, class: "chart" });
  for (let v = yMin; v <= yMax; v++) {
    svg.append(s("line", { x1: L, x2: W - R, y1: ys(v), y2: ys(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: ys(v) + 4, "text-anchor": "end", class: "axis" }, v));
  }
  for (const v of [0, 0.5, 1]) svg.append(s("text", { x: xs(v), y: H - 18, "text-anchor": "middle", class: "axis" }, `${v * 100}%`));
  svg.append(s("text", { x: (W + L) / 2, y: H - 2, "text-anchor": "middle", class: "axis" }, xLabel));
  svg.append(s("text", { x: 4, y: 12, class: "axis" }, yLabel));
  for (const p of points) {
    const dot = s("circle", { cx: xs(p.x), cy: ys(p.y), r: Math.min(10, 3 + Math.sqrt(p.n || 1)), class: "dot faint" }, s("title", {}, p.label));
    svg.append(p.href ? s("a", { href: p.href, "aria-label": p.label }, dot) : dot);
  }
  return svg;
}

// A reliability diagram: predicted against observed rates (both 0..1), one dot per bin sized by its n and
// labelled with it, the diagonal where they agree. Both axes end at the same round top, so the diagonal
// stays at 45° when every prediction is low. points: [{x, y, n, label}].
export function reliabilityChart(title, points, xLabel, yLabel) {
  if (!points.length) return empty("No reliability bins to draw.");
  const W = 360, H = 320, L = 44, R = 12, T = 12, B = 40;
  const top = Math.min(1, Math.ceil(10 * Math.max(0.2, ...points.flatMap((p) => [p.x, p.y]))) / 10);
  const xs = (v) => L + (v / top) * (W - L - R);
  const ys = (v) => T + (1 - v / top) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart reliability" });
  const step = top <= 0.6 ? 0.1 : 0.2;
  for (let k = 0; k * step <= top + 1e-9; k++) {
    const v = k * step;
    svg.append(s("line", { x1: L, x2: W - R, y1: ys(v), y2: ys(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: ys(v) + 4, "text-anchor": "end", class: "axis" }, pct(v, 0)));
    svg.append(s("text", { x: xs(v), y: H - 22, "text-anchor": "middle", class: "axis" }, pct(v, 0)));
  }
  svg.append(s("line", { x1: xs(0), y1: ys(0), x2: xs(top), y2: ys(top), class: "diagonal" }));
  svg.append(s("line", { x1: L + 8, x2: L + 30, y1: T + 10, y2: T + 10, class: "diagonal" }));
  svg.append(s("text", { x: L + 36, y: T + 14, class: "axis" }, "predicted = observed"));
  svg.append(s("text", { x: (W + L) / 2, y: H - 4, "text-anchor": "middle", class: "axis" }, xLabel));
  svg.append(s("text", { x: 12, y: (H - B + T) / 2, "text-anchor": "middle", class: "axis", transform: `rotate(-90 12 ${(H - B + T) / 2})` }, yLabel));
  const d = points.map((p, i) => `${i ? "L" : "M"}${xs(p.x).toFixed(1)},${ys(p.y).toFixed(1)}`).join(" ");
  svg.append(s("path", { d, class: "line predicted" }));
  const most = Math.max(...points.map((p) => p.n));
  for (const p of points) {
    svg.append(s("circle", { cx: xs(p.x), cy: ys(p.y), r: 3 + 6 * Math.sqrt(p.n / most), class: "dot predicted" }, s("title", {}, p.label)));
    // Right of the dot, or left of it near the right edge, so the label stays inside the chart.
    const right = xs(p.x) < W - R - 60;
    svg.append(s("text", { x: xs(p.x) + (right ? 8 : -8), y: ys(p.y) + 14, "text-anchor": right ? "start" : "end", class: "axis" }, `n ${int(p.n)}`));
  }
  return svg;
}

// Asks for one text in a modal <dialog> (focus moves in and is kept there, Esc cancels, focus returns to
// the control that asked): resolves to the trimmed text, or null when cancelled.
export function ask({ title, fieldLabel, hint, confirm = "Save", maxlength = 5000 }) {
  const opener = document.activeElement;
  const id = `ask-${Date.now()}`;
  const field = h("textarea", { id: `${id}-text`, name: "text", rows: 4, maxlength, required: true, "aria-describedby": hint ? `${id}-hint` : null });
  const problem = h("p", { id: `${id}-problem`, class: "error", role: "alert", hidden: true });
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const form = h("form", { method: "dialog", novalidate: true },
    h("h2", { id: `${id}-title` }, title),
    h("label", { for: field.id }, fieldLabel),
    hint ? h("p", { id: `${id}-hint`, class: "hint" }, hint) : null,
    field,
    problem,
    h("div", { class: "actions" }, h("button", { type: "submit" }, confirm), cancel));
  const dialog = h("dialog", { class: "ask", "aria-labelledby": `${id}-title` }, form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    let answer = null;
    form.addEventListener("submit", (e) => {
      const text = field.value.trim();
      if (!text) {
        e.preventDefault();
        problem.textContent = `${fieldLabel}: please write something, or cancel.`;
        problem.hidden = false;
        field.setAttribute("aria-invalid", "true");
        field.focus();
        return;
      }
      answer = text;
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.focus) opener.focus();
      resolve(answer);
    });
    dialog.showModal();
    field.focus();
  });
}

export function stat(labelText, value, sub) {
  return h("div", { class: "stat" }, h("div", { class: "stat-label" }, labelText), h("div", { class: "stat-value" }, value), sub ? h("div", { class: "stat-sub" }, sub) : null);
}

function wireSignOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    // The page's own requests still in flight come back 401 once the session is gone; their
    // redirect to "/signin?next=<this page>" must not overtake the sign-out's plain "/signin".
    signingOut = true;
    try {
      await api("reporting", "/v1/session", { method: "DELETE" });
    } finally {
      window.location.assign("/signin");
    }
  });
}

wireSignOut();

// A page's data is drawn: counted on <body data-loaded> (tests wait on it) and marked for bench.console.
export function markLoaded() {
  const n = Number(document.body.dataset.loaded || 0) + 1;
  document.body.dataset.loaded = String(n);
  if (n === 1) performance.mark("qa-loaded");
}
