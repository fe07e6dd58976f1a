import { errorBox, fill, h } from "../console.js";

const form = document.getElementById("signin-form");
const out = h("div", { role: "status" });
form.after(out);
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  fill(out, h("p", {}, "Signing in…"));
  try {
    // The session is issued by the console's own service; every other service accepts its cookie.
    const me = await fetch("/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ api_key: key }),
    });
    if (!me.ok) {
      const problem = await me.json().catch(() => ({}));
      throw new Error(me.status === 401 ? "That key is not valid, or it was revoked. Check it and try again." : problem.detail || `Sign-in failed (${me.status})`);
    }
    const next = new URLSearchParams(window.location.search).get("next");
    window.location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/");
  } catch (err) {
    fill(out, errorBox(err));
  }
});
