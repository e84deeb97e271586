// The console's shell: who is logged in, the navigation, and the page router (#/page?k=v).
// Each page is a module with render(main, ctx); ctx.signal aborts its polls when the user
// leaves the page.
import { login, saveSession, session, setUnauthorizedHandler, whoami } from "./api.js";
import { errorBox, h } from "./ui.js";
// Pages are loaded when first shown: the first paint waits only for the shell and one page.
const pages = {
  map: () => import("./map.js"), repos: () => import("./repos.js"),
  repo: () => import("./repos.js"), version: () => import("./version.js"),
  activity: () => import("./activity.js"), admin: () => import("./admin.js"),
};

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logoutButton = document.getElementById("logout");
let current = null; // AbortController of the page shown

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, query] = hash.split("?");
  return { name: name || "map", params: new URLSearchParams(query || "") };
}

function logout() {
  saveSession(null);
  location.hash = "#/login";
  route();
}

function showShell(s) {
  nav.hidden = false;
  // Admin pages are not offered to others at all (the API would refuse them anyway).
  for (const a of nav.querySelectorAll("[data-admin]")) {
    if (s.isAdmin) a.hidden = false;
    else a.remove();
  }
  who.textContent = s.open ? `region ${s.region} · access control off`
    : `${s.user}${s.isAdmin ? " (admin)" : ""} · region ${s.region}`;
  logoutButton.hidden = s.open;
}

function renderLogin(message) {
  nav.hidden = true;
  who.textContent = "";
  logoutButton.hidden = true;
  const err = h("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const form = h("form", { class: "stack card login", id: "login", "aria-labelledby": "login-h" },
    h("h1", { id: "login-h" }, "Log in to Meridian"),
    h("label", { for: "username" }, "Username"),
    h("input", { id: "username", name: "username", autocomplete: "username", required: true }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password",
                 autocomplete: "current-password", required: true }),
    err,
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Log in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = form.username.value;
    err.textContent = "";
    try {
      const basic = await login(user, form.password.value);
      const me = await whoami(basic);
      if (!me) throw new Error("Logged in, but the server did not say who you are.");
      saveSession({ user, basic, region: me.region, isAdmin: me.isAdmin });
      location.replace("#/map");
      location.reload(); // a fresh shell for the new identity
    } catch (e) {
      err.textContent = e.message;
      form.password.select();
    }
  });
  view.replaceChildren(form);
  form.username.focus();
}

let routeSeq = 0; // a newer route() wins over one still waiting for the server

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const seq = ++routeSeq;
  let s = session();
  if (!s) {
    // No session: access control may be off (a node on loopback), then no login is needed.
    // /v2/ says so without credentials (200); with access control on it answers 401.
    const base = await fetch("/v2/", { cache: "no-store", credentials: "omit" });
    const me = base.ok ? await whoami(null) : null;
    if (seq !== routeSeq) return;
    if (me && me.isAdmin) {
      s = { open: true, region: me.region, isAdmin: true };
      saveSession(s);
    }
  }
  const { name, params } = parseHash();
  if (!s || name === "login") {
    if (s && name === "login") { location.hash = "#/map"; return; }
    renderLogin();
    return;
  }
  showShell(s);
  const load = pages[name] || pages.map;
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === (name === "repo" || name === "version" ? "repos" : name))
      a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = h("div", { "data-page": name });
  view.replaceChildren(main);
  try {
    const page = await load();
    await page.render(main, { name, params, session: s, signal: current.signal });
  } catch (e) {
    if (e.name !== "AbortError") main.append(errorBox(e));
  }
}

setUnauthorizedHandler(() => {
  if (current) current.abort(); // the page's polls stop with the session
  saveSession(null);
  renderLogin("Your session has ended: log in again.");
});
logoutButton.addEventListener("click", logout);
window.addEventListener("hashchange", route);
route();
