// A conversation's turns as a list; evidence turns are marked, and `focus` scrolls to and highlights turns.
import { empty, h } from "./console.js";

export function transcript(turns, evidence = new Set(), comments = [], { onComment } = {}) {
  if (!turns.length) return { node: empty("This conversation has no turns."), focus: () => {} };
  const items = turns.map((t, i) => {
    const notes = comments.filter((c) => c.turn === i).map((c) => h("div", { class: "hint" }, `Comment: ${c.text}`));
    return h("li", { id: `turn-${i}`, class: `turn ${t.role}${evidence.has(i) ? " evidence" : ""}`, tabindex: "-1" },
      h("div", { class: "speaker" }, `${i + 1}. ${t.role}${t.author ? ` (${t.author})` : ""}${evidence.has(i) ? " · evidence" : ""}`),
      h("div", {}, t.text),
      notes,
      onComment ? h("button", { type: "button", class: "link", onclick: () => onComment(i) }, `Comment on turn ${i + 1}`) : null);
  });
  // Focusable, so keyboard users can scroll it (it scrolls on its own when long).
  const node = h("ol", { class: "transcript", "aria-label": "Transcript", tabindex: "0" }, items);
  function focus(list) {
    items.forEach((el, i) => el.classList.toggle("evidence", list.includes(i)));
    const first = items[list[0]];
    if (first) {
      first.scrollIntoView({ block: "center" });
      first.focus();
    }
  }
  return { node, focus };
}
